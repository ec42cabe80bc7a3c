"""How a run ends (typed outcomes) and what it leaves behind between steps (checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agentkit.errors import RunError
from agentkit.messages import Message, Usage

__all__ = ["Checkpoint", "RunFailure", "RunOutcome", "RunSuccess"]

T = TypeVar("T")


class Checkpoint(BaseModel):
    """The durable state after a finished step; ``Agent.run(resume=...)`` continues from it.

    It is plain JSON (``model_dump_json`` / ``model_validate_json``) so a host
    can store it anywhere. ``usage`` is everything spent up to this point,
    including usage an earlier resume had reused. The counters carry the
    run's bounds across a resume so a crash cannot reset them.
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


RunOutcome = RunSuccess | RunFailure
