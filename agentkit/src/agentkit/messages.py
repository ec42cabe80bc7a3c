"""Typed conversation messages, tool calls and token usage.

Every type here is a pydantic model so a host can persist a run (events,
checkpoints) as JSON and load it back unchanged.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "error", "other"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Usage(_Frozen):
    """Tokens consumed by one or more model calls.

    ``estimated_requests`` counts the requests whose provider reported no
    usage, so agentkit estimated their tokens (see
    ``agentkit.models._usage``); limits count those
    estimates like reported tokens.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    estimated_requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def estimated(self) -> bool:
        """Whether any of these tokens are agentkit's estimate rather than the provider's count."""
        return self.estimated_requests > 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            requests=self.requests + other.requests,
            estimated_requests=self.estimated_requests + other.estimated_requests,
        )


class ToolCall(_Frozen):
    """A model's request to run one tool. ``id`` pairs it with its result."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class SystemMessage(_Frozen):
    role: Literal["system"] = "system"
    content: str


class UserMessage(_Frozen):
    role: Literal["user"] = "user"
    content: str


class AssistantMessage(_Frozen):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ToolResultMessage(_Frozen):
    role: Literal["tool"] = "tool"
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolResultMessage,
    Field(discriminator="role"),
]


def goal_text(goal: str, input: dict[str, Any] | None = None) -> str:
    """The user message a run's goal becomes: the goal, then its structured input as JSON."""
    if not input:
        return goal
    return goal + "\n\nInput (JSON):\n" + json.dumps(input, indent=2, sort_keys=True, default=str)
