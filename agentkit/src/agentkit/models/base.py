"""The one interface every LLM client implements.

A provider module turns a :class:`ModelRequest` into its own wire format and
maps the answer back into a :class:`ModelResponse`. Nothing above this layer
knows which provider it talks to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentkit.messages import AssistantMessage, FinishReason, Message, ToolCall, Usage

DeltaCallback = Callable[[str], Awaitable[None]]
"""Receives each streamed text delta as the provider produces it."""


class ModelSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = Field(default=60.0, gt=0, description="Seconds for one HTTP attempt.")


class ToolDefinition(BaseModel):
    """What the model is told about a tool: its name, purpose and JSON schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ModelRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: Sequence[Message]
    tools: Sequence[ToolDefinition] = ()
    settings: ModelSettings = ModelSettings()


class ModelResponse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: FinishReason = "stop"
    model_name: str = ""

    def to_message(self) -> AssistantMessage:
        return AssistantMessage(content=self.text, tool_calls=self.tool_calls)


class Model(ABC):
    """An LLM that answers a conversation, possibly with tool calls.

    ``name`` is the ``provider:model`` string the model was built from; it is
    what events, usage records and task rows show.
    """

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    async def request(self, request: ModelRequest, *, on_delta: DeltaCallback | None = None) -> ModelResponse:
        """Answer ``request``.

        When ``on_delta`` is given and the provider can stream, the text is
        streamed and each delta is awaited on ``on_delta`` as it arrives; the
        full response is still returned at the end. Raises
        :class:`agentkit.errors.ModelError` (or a subclass) on failure.
        """

    async def aclose(self) -> None:  # noqa: B027 - an optional hook: most models hold nothing
        """Release the connections this model holds for the running event loop."""
