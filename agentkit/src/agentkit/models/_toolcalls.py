"""Tool-call argument decoding and the assembly of streamed tool calls.

OpenAI and Anthropic both stream a tool call as a start (id, name) followed by
JSON fragments keyed by an index; this module glues them back together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import ModelError
from agentkit.messages import ToolCall

__all__ = ["ToolCallAssembler", "decode_arguments"]


def decode_arguments(provider: str, tool_name: str, raw: str) -> dict[str, Any]:
    """Parse a tool call's JSON arguments; the model must produce a JSON object."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{provider} returned invalid JSON arguments for tool {tool_name!r}: {exc}", provider=provider
        ) from exc
    if not isinstance(value, dict):
        raise ModelError(
            f"{provider} returned non-object arguments for tool {tool_name!r}: {raw[:200]}",
            provider=provider,
        )
    return value


@dataclass
class _Partial:
    id: str = ""
    name: str = ""
    fragments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Collects streamed tool-call pieces by index and yields complete calls in index order."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._calls: dict[int, _Partial] = {}

    def update(self, index: int, *, id: str | None = None, name: str | None = None, arguments: str = "") -> None:
        partial = self._calls.setdefault(index, _Partial())
        # Some OpenAI-compatible servers repeat id/name on every chunk; the first non-empty one wins.
        if id and not partial.id:
            partial.id = id
        if name and not partial.name:
            partial.name = name
        if arguments:
            partial.fragments.append(arguments)

    def finish(self) -> tuple[ToolCall, ...]:
        calls: list[ToolCall] = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if not partial.name:
                raise ModelError(f"{self._provider} streamed a tool call without a name", provider=self._provider)
            arguments = decode_arguments(self._provider, partial.name, "".join(partial.fragments))
            calls.append(ToolCall(id=partial.id or f"call_{index}", name=partial.name, arguments=arguments))
        return tuple(calls)
