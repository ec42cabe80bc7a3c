"""Small builders shared by the agentkit tests."""

from __future__ import annotations

from typing import Any

from agentkit.events import RunEvent, RunEventType
from agentkit.messages import ToolCall, Usage
from agentkit.models.base import ModelResponse


def call(name: str, call_id: str = "c1", **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


def calls(*tool_calls: ToolCall, tokens: int = 10) -> ModelResponse:
    return ModelResponse(
        tool_calls=tool_calls,
        finish_reason="tool_calls",
        usage=Usage(input_tokens=tokens, output_tokens=tokens, requests=1),
    )


def answer(text: str, tokens: int = 10) -> ModelResponse:
    return ModelResponse(text=text, usage=Usage(input_tokens=tokens, output_tokens=tokens, requests=1))


class EventLog:
    """An ``on_event`` hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    async def __call__(self, event: RunEvent) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type.value for e in self.events]

    def of(self, type_: RunEventType) -> list[RunEvent]:
        return [e for e in self.events if e.type is type_]
