"""Anthropic Messages API with native tool use (``tool_use`` / ``tool_result`` blocks).

The ``anthropic`` SDK is imported lazily so that ``import agentkit.models``
works without the ``agentkit[anthropic]`` extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from agentkit.errors import ModelError
from agentkit.messages import (
    AssistantMessage,
    FinishReason,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
)
from agentkit.models import _guard
from agentkit.models._clients import LoopClients, aiohttp_installed
from agentkit.models._env import missing_sdk, resolve_api_key, resolve_optional
from agentkit.models._errors import body_message, empty_response_error, status_error, transport_error
from agentkit.models._gate import gate_for
from agentkit.models._retry import RetryPolicy, request_with_retry
from agentkit.models._toolcalls import ToolCallAssembler
from agentkit.models._usage import estimate_usage
from agentkit.models.base import DeltaCallback, Model, ModelRequest, ModelResponse
from agentkit.models.ratelimit import RateLimiter

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message as AnthropicMessage
    from anthropic.types import MessageParam, ToolParam

__all__ = ["DEFAULT_BASE_URL", "AnthropicModel"]

DEFAULT_BASE_URL = "https://api.anthropic.com"

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

KEY_ENV = ("ANTHROPIC_API_KEY",)
"""Where the key is read from when none is passed."""


class AnthropicModel(Model):
    """A Claude model. ``max_tokens`` is mandatory in this API, hence ``default_max_tokens``.

    ``ModelSettings.temperature`` does not apply: the current Messages API has no such parameter.

    ``api_key`` and ``base_url`` override ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``.
    """

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        default_max_tokens: int = 4096,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        try:
            import anthropic  # noqa: F401 - fail at build time, not on the first request
        except ImportError as exc:
            raise missing_sdk("anthropic", "anthropic", "anthropic", exc) from exc
        self._model_name = model_name
        self._api_key = resolve_api_key("anthropic", api_key, *KEY_ENV)
        self._base_url = resolve_optional(base_url, "ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        self._default_max_tokens = default_max_tokens
        self._retry = retry or RetryPolicy()
        self._rate_limiter = rate_limiter
        self._clients: LoopClients[AsyncAnthropic] = LoopClients(self._build_client, lambda client: client.close())

    @property
    def name(self) -> str:
        return f"anthropic:{self._model_name}"

    @property
    def base_url(self) -> str:
        return self._base_url

    @asynccontextmanager
    async def _translate_errors(self, limit: float) -> AsyncIterator[None]:
        """Map anthropic/httpx2 exceptions raised inside the block to agentkit ModelErrors."""
        import anthropic
        import httpx2

        try:
            yield
        except anthropic.APIStatusError as exc:
            message = exc.api_message or body_message(exc.body, exc.message)
            raise status_error("anthropic", exc.status_code, message, exc.response.headers) from exc
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            # APITimeoutError is an APIConnectionError; the cause chain tells a real timeout apart.
            raise transport_error(
                "anthropic", exc, timeout=limit, base_url=self._base_url, timeout_types=(httpx2.TimeoutException,)
            ) from exc
        except anthropic.APIError as exc:
            raise ModelError(f"anthropic error: {exc}", provider="anthropic") from exc

    async def request(self, request: ModelRequest, *, on_delta: DeltaCallback | None = None) -> ModelResponse:
        _guard.check_real_request("anthropic", self._base_url)
        kwargs = self._build_kwargs(request)
        timeout = request.settings.timeout
        # The client is leased outside the timed attempts, so building one never eats the timeout.
        with self._clients.lease() as client:
            return await request_with_retry(
                complete=lambda: self._complete(client, kwargs, timeout),
                stream=lambda forward: self._stream(client, request, kwargs, timeout, forward),
                on_delta=on_delta,
                policy=self._retry,
                provider="anthropic",
                attempt_timeout=timeout,
                gate=gate_for(self._rate_limiter, self.name, request, sleep=self._retry.sleep),
            )

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _build_kwargs(self, request: ModelRequest) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if isinstance(m, SystemMessage))
        kwargs: dict[str, Any] = {
            "model": self._model_name,
            "messages": _message_params(request.messages),
            "max_tokens": request.settings.max_tokens or self._default_max_tokens,
        }
        if system:
            kwargs["system"] = system
        if request.tools:
            tools: list[ToolParam] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
            ]
            kwargs["tools"] = tools
            # Anthropic's default, said explicitly for compatible servers that default otherwise.
            kwargs["tool_choice"] = {"type": "auto"}
        # ModelSettings.temperature is not sent: this Messages API generation (SDK 2.x) has no
        # sampling-temperature parameter, and an unknown field would be rejected with a 400.
        return kwargs

    def _build_client(self) -> AsyncAnthropic:
        from anthropic import AsyncAnthropic, DefaultAioHttpClient

        http_client = DefaultAioHttpClient() if aiohttp_installed() else None
        # max_retries=0: agentkit's RetryPolicy is the only retry layer.
        return AsyncAnthropic(api_key=self._api_key, base_url=self._base_url, max_retries=0, http_client=http_client)

    async def _complete(self, client: AsyncAnthropic, kwargs: dict[str, Any], limit: float) -> ModelResponse:
        async with self._translate_errors(limit):
            message: AnthropicMessage = await client.messages.create(**kwargs, timeout=limit)
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))
        usage = message.usage
        cached = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        input_tokens = usage.input_tokens + cached
        return ModelResponse(
            text="".join(text) or None,
            tool_calls=tuple(calls),
            usage=Usage(input_tokens=input_tokens, output_tokens=usage.output_tokens, requests=1),
            finish_reason=_finish_reason(message.stop_reason, bool(calls)),
            model_name=self.name,
        )

    async def _stream(
        self,
        client: AsyncAnthropic,
        request: ModelRequest,
        kwargs: dict[str, Any],
        limit: float,
        on_delta: DeltaCallback,
    ) -> ModelResponse:
        text: list[str] = []
        calls = ToolCallAssembler("anthropic")
        stop_reason: str | None = None
        tokens = {"input": 0, "cache_creation": 0, "cache_read": 0, "output": 0}
        reported = False
        async with self._translate_errors(limit):
            stream = await client.messages.create(**kwargs, stream=True, timeout=limit)
            async with stream:
                async for event in stream:
                    if event.type == "message_start":
                        reported = True
                        start = event.message.usage
                        tokens["input"] = start.input_tokens
                        tokens["cache_creation"] = start.cache_creation_input_tokens or 0
                        tokens["cache_read"] = start.cache_read_input_tokens or 0
                        tokens["output"] = start.output_tokens
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            calls.update(event.index, id=block.id, name=block.name)
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            text.append(delta.text)
                            await on_delta(delta.text)
                        elif delta.type == "input_json_delta":
                            calls.update(event.index, arguments=delta.partial_json)
                    elif event.type == "message_delta":
                        reported = True
                        stop_reason = event.delta.stop_reason or stop_reason
                        # message_delta usage is cumulative; fields it omits keep their start values.
                        final = event.usage
                        tokens["output"] = final.output_tokens
                        if final.input_tokens is not None:
                            tokens["input"] = final.input_tokens
                        if final.cache_creation_input_tokens is not None:
                            tokens["cache_creation"] = final.cache_creation_input_tokens
                        if final.cache_read_input_tokens is not None:
                            tokens["cache_read"] = final.cache_read_input_tokens
        tool_calls = calls.finish()
        answer = "".join(text) or None
        if stop_reason is None and answer is None and not tool_calls:
            raise empty_response_error("anthropic")
        input_tokens = tokens["input"] + tokens["cache_creation"] + tokens["cache_read"]
        usage = (
            Usage(input_tokens=input_tokens, output_tokens=tokens["output"], requests=1)
            if reported
            else estimate_usage(request, answer, tool_calls)
        )
        return ModelResponse(
            text=answer,
            tool_calls=tool_calls,
            usage=usage,
            finish_reason=_finish_reason(stop_reason, bool(tool_calls)),
            model_name=self.name,
        )


def _message_params(messages: Sequence[Message]) -> list[MessageParam]:
    """Anthropic wants strictly alternating user/assistant turns, so same-role turns are merged.

    Tool results travel as ``tool_result`` blocks inside a user turn.
    """
    params: list[MessageParam] = []
    for message in messages:
        role, blocks = _blocks(message)
        if role is None or not blocks:
            continue
        if params and params[-1]["role"] == role:
            previous = params[-1]["content"]
            assert isinstance(previous, list)  # _blocks always builds lists
            previous.extend(blocks)
        elif role == "user":
            params.append({"role": "user", "content": blocks})
        else:
            params.append({"role": "assistant", "content": blocks})
    return params


def _blocks(message: Message) -> tuple[Literal["user", "assistant"] | None, list[Any]]:
    if isinstance(message, SystemMessage):
        return None, []
    if isinstance(message, AssistantMessage):
        blocks: list[Any] = []
        if message.content:
            blocks.append({"type": "text", "text": message.content})
        for call in message.tool_calls:
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
        return "assistant", blocks
    if isinstance(message, ToolResultMessage):
        result = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
            "is_error": message.is_error,
        }
        return "user", [result]
    return "user", [{"type": "text", "text": message.content}]


def _finish_reason(reason: str | None, has_tool_calls: bool) -> FinishReason:
    if has_tool_calls:
        return "tool_calls"
    if reason is None:
        return "stop"
    return _STOP_REASONS.get(reason, "other")
