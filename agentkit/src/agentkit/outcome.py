"""How a run ends (typed outcomes) and what it leaves behind between steps (checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.approval import PendingApproval
from agentkit.errors import RunError
from agentkit.messages import AssistantMessage, Message, Usage

__all__ = ["Checkpoint", "RunFailure", "RunOutcome", "RunSuccess", "RunSuspended"]

T = TypeVar("T")


class Checkpoint(BaseModel):
    """The durable state after a finished step; ``Agent.run(resume=...)`` continues from it.

    It is plain JSON (``model_dump_json`` / ``model_validate_json``) so a host
    can store it anywhere. ``usage`` is everything spent up to this point,
    including usage an earlier resume had reused. The counters carry the
    run's bounds across a resume so a crash cannot reset them.

    A suspended run's checkpoint ends with the assistant message whose tool
    calls have not run yet, and ``pending_approvals`` lists the calls that
    wait for a person. ``usage`` already includes that step's model call: a
    resume runs only the step's tools.

    A run given earlier conversation (``Agent.run(history=...)``) keeps it in
    ``messages``, between the system messages and its goal; ``history_messages``
    says how many, so the memory window knows which messages are the goal.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    run_id: str
    agent_name: str
    goal: str
    messages: list[Message]
    steps_completed: int = Field(ge=0)
    usage: Usage = Usage()
    output_retries: int = 0
    denied_calls: int = 0
    tool_errors: int = 0
    pending_approvals: list[PendingApproval] = []
    history_messages: int = Field(default=0, ge=0)
    """How many messages after the system messages are earlier conversation, before the run's goal."""

    @model_validator(mode="after")
    def _pending_calls_belong_to_the_last_message(self) -> Checkpoint:
        if not self.pending_approvals:
            return self
        last = self.messages[-1] if self.messages else None
        ids = {c.id for c in last.tool_calls} if isinstance(last, AssistantMessage) else set()
        stray = [p.call_id for p in self.pending_approvals if p.call_id not in ids]
        if stray:
            raise ValueError(f"pending approvals {stray} are not tool calls of the last assistant message")
        return self


@dataclass(frozen=True)
class _OutcomeBase:
    run_id: str
    steps: int
    usage: Usage
    """Usage spent by this invocation of ``run`` only."""
    reused_usage: Usage
    """Usage of the steps taken over from a resumed checkpoint (not spent again)."""
    messages: tuple[Message, ...]
    model_name: str

    @property
    def total_usage(self) -> Usage:
        return self.usage + self.reused_usage


@dataclass(frozen=True)
class RunSuccess(_OutcomeBase):
    """The run produced a final answer.

    ``output`` is the answer text, or an instance of the agent's
    ``output_type`` when one was set; ``text`` is always the raw answer.
    """

    output: Any
    text: str
    ok: Literal[True] = True

    def output_as(self, type_: type[T]) -> T:
        """``output`` checked to be a ``type_`` (typed access for structured outputs)."""
        if not isinstance(self.output, type_):
            raise TypeError(f"output is {type(self.output).__name__}, not {type_.__name__}")
        return self.output


@dataclass(frozen=True)
class RunFailure(_OutcomeBase):
    """The run ended without an answer; ``error.kind`` says why, ``error.retryable`` if retrying may help.

    ``checkpoint`` is the last finished step, ready for ``run(resume=...)``.
    """

    error: RunError
    checkpoint: Checkpoint | None = None
    ok: Literal[False] = False


@dataclass(frozen=True)
class RunSuspended(_OutcomeBase):
    """The run waits for a person: ``pending`` calls need a decision before the step's tools run.

    Store ``checkpoint`` (it is not passed to ``on_checkpoint``) and, once
    every pending call is decided, resume with ``run(resume=checkpoint)`` and
    an approver that answers from the decisions. ``steps`` counts finished
    steps; the suspended step's model call is in ``checkpoint.usage``.
    """

    pending: tuple[PendingApproval, ...]
    checkpoint: Checkpoint
    ok: Literal[False] = False


RunOutcome = RunSuccess | RunFailure | RunSuspended
