"""A person's answer to a tool call the policy marked ``approval_required``.

The host's ``RunHooks.approve`` returns one of:

* ``True`` / ``False``: approve or refuse, as is;
* an :class:`Approval`: approve or refuse with a reason, and (approving)
  optionally with edited arguments;
* :data:`DEFER`: nobody has decided yet. The run suspends before any tool of
  the step runs and ends with ``RunSuspended``, listing each deferred call as
  a :class:`PendingApproval`; the host resumes it from ``outcome.checkpoint``
  once the decisions exist. See :mod:`agentkit.policy` for the whole flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["DEFER", "Approval", "Deferred", "PendingApproval"]


@dataclass(frozen=True)
class Approval:
    """A person's decision on one call. ``arguments`` replace the model's when approved (validated again)."""

    approved: bool
    reason: str = ""
    arguments: dict[str, Any] | None = None


class Deferred(Enum):
    """The type of :data:`DEFER` (an enum, so type checkers can narrow on it)."""

    DEFER = "defer"


DEFER = Deferred.DEFER
"""An approver's "no decision yet": suspend the run until the host has one."""


class PendingApproval(BaseModel):
    """A call that waits for a decision: its validated arguments and why the policy asked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: str
    name: str
    arguments: dict[str, Any]
    reason: str
