"""The security policy: which tool calls may run.

Every call the model makes is decided before it runs, after its arguments
were validated (so constraints see typed, coerced values). The loop acts on
the decision:

* ``allow``: the tool runs.
* ``deny``: the tool does not run; the model gets a tool error result with
  the reason and may continue (for instance by choosing another tool).
* ``approval_required``: the host's ``RunHooks.approve`` callback decides.
  With no approver the call is denied, saying approval was unavailable.

Each decision is emitted as a ``policy_decision`` event. A denial only ends
the run (``RunFailure(PolicyDenied)``) when the model keeps going: more than
``Limits.max_denied_calls`` denied calls in one run. Telling the model is
usually enough; the bound stops a model that loops on a forbidden tool from
burning the step budget.

Approvals
---------
The approver answers ``True``/``False``, an :class:`~agentkit.approval.Approval`
or :data:`~agentkit.approval.DEFER`:

* ``Approval(approved=False, reason=...)`` denies the call; the model is told
  the reason.
* ``Approval(approved=True, arguments=...)`` runs the call with the edited
  arguments. They are validated against the tool's schema (invalid ones give
  the model an ``invalid_arguments`` tool error) and the deny-list and
  constraints are checked against them again: an approval only answers
  ``approval_required``, it never overrides a denial.
* ``DEFER`` (a person has not decided yet) suspends the run. The step's calls
  are all decided first, then none of its tools run: the run emits an
  ``approval_requested`` event per deferred call and ends with
  ``RunSuspended``, whose checkpoint ends with the model's tool calls and lists
  them in ``pending_approvals``. The host stores it, waits for the decisions
  (``Policy.approval_timeout`` says how long it should wait; agentkit does
  not enforce it) and resumes with ``run(resume=checkpoint)``. The model is
  not asked again: the policy decides the step's calls again, the approver
  answers from the recorded decisions (or defers again, which suspends again)
  and the run goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from agentkit.messages import ToolCall

__all__ = ["ArgumentConstraint", "Policy", "PolicyDecision", "PolicyVerdict", "pydantic_constraint"]


class PolicyVerdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


class PolicyDecision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: PolicyVerdict
    reason: str = ""

    @classmethod
    def allow(cls, reason: str = "") -> PolicyDecision:
        return cls(verdict=PolicyVerdict.ALLOW, reason=reason)

    @classmethod
    def deny(cls, reason: str) -> PolicyDecision:
        return cls(verdict=PolicyVerdict.DENY, reason=reason)

    @classmethod
    def approval_required(cls, reason: str) -> PolicyDecision:
        return cls(verdict=PolicyVerdict.APPROVAL_REQUIRED, reason=reason)

    @property
    def allowed(self) -> bool:
        return self.verdict is PolicyVerdict.ALLOW


ArgumentConstraint = Callable[[Mapping[str, Any]], str | None]
"""Inspects a call's validated arguments; returns a denial reason, or ``None`` to accept."""


def pydantic_constraint(model: type[BaseModel]) -> ArgumentConstraint:
    """A constraint that accepts arguments only if they validate against ``model``.

    Lets a policy narrow a tool's own schema with pydantic fields, e.g.
    ``class SmallQuery(BaseModel): limit: int = Field(le=100)``. Extra
    arguments the constraint model does not mention are ignored.
    """

    def check(arguments: Mapping[str, Any]) -> str | None:
        try:
            model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
            return f"arguments violate policy: {problems}"
        return None

    return check


@dataclass(frozen=True)
class Policy:
    """Decides each tool call, in this order: deny-list, allow-list, constraints, approval.

    ``allow=None`` allows every tool not denied; an allow-list of names
    allows only those. ``require_approval`` may contain ``"*"`` for every
    tool. Subclass and override :meth:`decide` for anything richer.
    """

    allow: Collection[str] | None = None
    deny: Collection[str] = frozenset()
    require_approval: Collection[str] = frozenset()
    constraints: Mapping[str, Sequence[ArgumentConstraint]] = field(default_factory=dict)
    approval_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.approval_timeout is not None and not self.approval_timeout > 0:
            raise ValueError(f"approval_timeout must be positive, got {self.approval_timeout}")

    def decide(self, call: ToolCall) -> PolicyDecision:
        name = call.name
        if name in self.deny:
            return PolicyDecision.deny(f"tool {name!r} is on the policy's deny-list")
        if self.allow is not None and name not in self.allow:
            return PolicyDecision.deny(f"tool {name!r} is not on the policy's allow-list")
        for constraint in self.constraints.get(name, ()):
            reason = constraint(call.arguments)
            if reason is not None:
                return PolicyDecision.deny(f"tool {name!r}: {reason}")
        if name in self.require_approval or "*" in self.require_approval:
            return PolicyDecision.approval_required(f"tool {name!r} requires approval")
        return PolicyDecision.allow()
