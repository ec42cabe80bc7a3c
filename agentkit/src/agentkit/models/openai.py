"""OpenAI Chat Completions, and every server that speaks the same API.

One client class serves ``openai:``, ``openrouter:``, ``vllm:``, ``ollama:``
and ``lmstudio:``; they differ only in base URL and where the key comes from
(see :data:`OPENAI_COMPATIBLE`). The ``openai`` SDK is imported lazily so that
``import agentkit.models`` works without the ``agentkit[openai]`` extra.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentkit.errors import MissingCredentialsError, ModelError
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
from agentkit.models._errors import (
    body_message,
    empty_response_error,
    missing_v1_hint,
    status_error,
    transport_error,
)
from agentkit.models._gate import gate_for
from agentkit.models._retry import RetryPolicy, request_with_retry
from agentkit.models._toolcalls import ToolCallAssembler, decode_arguments
from agentkit.models._usage import estimate_usage
from agentkit.models.base import DeltaCallback, Model, ModelRequest, ModelResponse
from agentkit.models.ratelimit import RateLimiter

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types import CompletionUsage
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionFunctionToolParam,
        ChatCompletionMessageFunctionToolCallParam,
        ChatCompletionMessageParam,
    )

__all__ = ["OPENAI_COMPATIBLE", "OpenAICompatible", "OpenAIModel"]

# Local servers ignore the key, but the SDK insists on a non-empty one and would
# otherwise fall back to OPENAI_API_KEY, sending that secret to a different host.
_PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class OpenAICompatible:
    """Where one OpenAI-compatible provider lives and how it authenticates."""

    provider: str
    default_base_url: str | None
    key_env: str
    base_url_env: str
    key_required: bool


OPENAI_COMPATIBLE: dict[str, OpenAICompatible] = {
    spec.provider: spec
    for spec in (
        OpenAICompatible("openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "OPENAI_BASE_URL", True),
        OpenAICompatible(
            "openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", True
        ),
        OpenAICompatible("vllm", None, "VLLM_API_KEY", "VLLM_BASE_URL", False),
        OpenAICompatible("ollama", "http://localhost:11434/v1", "OLLAMA_API_KEY", "OLLAMA_BASE_URL", False),
        OpenAICompatible("lmstudio", "http://localhost:1234/v1", "LMSTUDIO_API_KEY", "LMSTUDIO_BASE_URL", False),
    )
}

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIModel(Model):
    """A chat model behind the OpenAI Chat Completions API (or a compatible server).

    ``api_key`` and ``base_url`` override the provider's environment variables.
    ``retry`` replaces the default :class:`RetryPolicy`. ``rate_limiter`` is asked before
    every attempt (see :mod:`agentkit.models.ratelimit`).
    """

    def __init__(
        self,
        model_name: str,
        *,
        provider: str = "openai",
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        spec = OPENAI_COMPATIBLE.get(provider)
        if spec is None:
            raise ValueError(f"{provider!r} is not an OpenAI-compatible provider")
        try:
            import openai  # noqa: F401 - fail at build time, not on the first request
        except ImportError as exc:
            raise missing_sdk(provider, "openai", "openai", exc) from exc
        resolved_url = resolve_optional(base_url, spec.base_url_env) or spec.default_base_url
        if resolved_url is None:
            raise MissingCredentialsError(
                f"provider {provider!r} needs a base URL: set {spec.base_url_env} or pass base_url=..."
            )
        if spec.key_required:
            key = resolve_api_key(provider, api_key, spec.key_env)
        else:
            key = resolve_optional(api_key, spec.key_env) or _PLACEHOLDER_KEY
        self._provider = provider
        self._model_name = model_name
        self._api_key = key
        self._base_url = resolved_url
        self._retry = retry or RetryPolicy()
        self._rate_limiter = rate_limiter
        self._clients: LoopClients[AsyncOpenAI] = LoopClients(self._build_client, lambda client: client.close())
        # Only "openai" itself has deprecated max_tokens; compatible servers mostly know only max_tokens.
        self._max_tokens_field = "max_completion_tokens" if provider == "openai" else "max_tokens"

    @property
    def name(self) -> str:
        return f"{self._provider}:{self._model_name}"

    @property
    def base_url(self) -> str:
        return self._base_url

    @asynccontextmanager
    async def _translate_errors(self, limit: float) -> AsyncIterator[None]:
        """Map openai/httpx2 exceptions raised inside the block to agentkit ModelErrors."""
        import httpx2
        import openai

        provider = self._provider
        try:
            yield
        except openai.APIStatusError as exc:
            message = body_message(exc.body, exc.message)
            hint = missing_v1_hint(self._base_url) if exc.status_code == 404 else ""
            raise status_error(provider, exc.status_code, message, exc.response.headers, hint=hint) from exc
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            # APITimeoutError is an APIConnectionError; the cause chain tells a real timeout apart.
            raise transport_error(
                provider, exc, timeout=limit, base_url=self._base_url, timeout_types=(httpx2.TimeoutException,)
            ) from exc
        except openai.APIError as exc:
            raise ModelError(f"{provider} error: {exc}", provider=provider) from exc

    async def request(self, request: ModelRequest, *, on_delta: DeltaCallback | None = None) -> ModelResponse:
        _guard.check_real_request(self._provider, self._base_url)
        kwargs = self._build_kwargs(request)
        timeout = request.settings.timeout
        # The client is leased outside the timed attempts, so building one never eats the timeout.
        with self._clients.lease() as client:
            return await request_with_retry(
                complete=lambda: self._complete(client, request, kwargs, timeout),
                stream=lambda forward: self._stream(client, request, kwargs, timeout, forward),
                on_delta=on_delta,
                policy=self._retry,
                provider=self._provider,
                attempt_timeout=timeout,
                gate=gate_for(self._rate_limiter, self.name, request, sleep=self._retry.sleep),
            )

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _build_kwargs(self, request: ModelRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self._model_name,
            "messages": [_message_param(message) for message in request.messages],
        }
        if request.tools:
            tools: list[ChatCompletionFunctionToolParam] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
            kwargs["tools"] = tools
            # Said explicitly: some compatible servers (llama-cpp-python) take a missing
            # tool_choice as "none" and leave the tools out of the prompt.
            kwargs["tool_choice"] = "auto"
        if request.settings.temperature is not None:
            kwargs["temperature"] = request.settings.temperature
        if request.settings.max_tokens is not None:
            kwargs[self._max_tokens_field] = request.settings.max_tokens
        return kwargs

    def _build_client(self) -> AsyncOpenAI:
        from openai import AsyncOpenAI, DefaultAioHttpClient

        http_client = DefaultAioHttpClient() if aiohttp_installed() else None
        # max_retries=0: agentkit's RetryPolicy is the only retry layer.
        return AsyncOpenAI(api_key=self._api_key, base_url=self._base_url, max_retries=0, http_client=http_client)

    async def _complete(
        self, client: AsyncOpenAI, request: ModelRequest, kwargs: dict[str, Any], limit: float
    ) -> ModelResponse:
        from openai.types.chat import ChatCompletion

        async with self._translate_errors(limit):
            completion = await client.post(_COMPLETIONS, cast_to=ChatCompletion, body=kwargs, options=_options(limit))
        return self._from_completion(request, completion)

    async def _stream(
        self,
        client: AsyncOpenAI,
        request: ModelRequest,
        kwargs: dict[str, Any],
        limit: float,
        on_delta: DeltaCallback,
    ) -> ModelResponse:
        from openai import AsyncStream
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        text: list[str] = []
        calls = ToolCallAssembler(self._provider)
        finish: str | None = None
        usage: CompletionUsage | None = None
        async with self._translate_errors(limit):
            stream = await client.post(
                _COMPLETIONS,
                cast_to=ChatCompletion,
                body={**kwargs, "stream": True, "stream_options": {"include_usage": True}},
                options=_options(limit),
                stream=True,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices[:1]:
                        delta = choice.delta
                        if delta.content:
                            text.append(delta.content)
                            await on_delta(delta.content)
                        for fragment in delta.tool_calls or ():
                            function = fragment.function
                            calls.update(
                                fragment.index,
                                id=fragment.id,
                                name=function.name if function else None,
                                arguments=(function.arguments or "") if function else "",
                            )
                        if choice.finish_reason is not None:
                            finish = choice.finish_reason
        tool_calls = calls.finish()
        answer = "".join(text) or None
        if finish is None and answer is None and not tool_calls:
            # A 200 followed by nothing (llama-cpp-python does this when generation fails
            # mid-request) must not pass for an empty answer.
            raise empty_response_error(self._provider)
        return ModelResponse(
            text=answer,
            tool_calls=tool_calls,
            usage=_usage(usage, request, answer, tool_calls),
            finish_reason=_finish_reason(finish, tool_calls),
            model_name=self.name,
        )

    def _from_completion(self, request: ModelRequest, completion: ChatCompletion) -> ModelResponse:
        if not completion.choices:
            raise ModelError(f"{self._provider} returned no choices", provider=self._provider)
        choice = completion.choices[0]
        tool_calls = tuple(
            ToolCall(
                id=call.id,
                name=call.function.name,
                arguments=decode_arguments(self._provider, call.function.name, call.function.arguments),
            )
            for call in choice.message.tool_calls or ()
            if call.type == "function"
        )
        answer = choice.message.content or None
        return ModelResponse(
            text=answer,
            tool_calls=tool_calls,
            usage=_usage(completion.usage, request, answer, tool_calls),
            finish_reason=_finish_reason(choice.finish_reason, tool_calls),
            model_name=self.name,
        )


# The SDK's ``chat.completions.create`` first walks its arguments through a
# transform driven by their TypedDict annotations, a large share of a busy
# worker's CPU (py-spy; docs/benchmarks.md, Findings). The
# body built here is already wire-format JSON, so it goes through the SDK's
# documented generic ``post``, with the same path, auth and parsing.
_COMPLETIONS = "/chat/completions"


def _options(limit: float) -> Any:
    return {"timeout": limit, "security": {"bearer_auth": True}}


def _message_param(message: Message) -> ChatCompletionMessageParam:
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.content}
    if isinstance(message, AssistantMessage):
        calls: list[ChatCompletionMessageFunctionToolCallParam] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
        if calls:
            # "" rather than null: llama-cpp-python rejects a null content with an HTTP 500.
            return {"role": "assistant", "content": message.content or "", "tool_calls": calls}
        return {"role": "assistant", "content": message.content or ""}
    if isinstance(message, ToolResultMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    return {"role": "user", "content": message.content}


def _usage(
    usage: CompletionUsage | None, request: ModelRequest, text: str | None, tool_calls: tuple[ToolCall, ...]
) -> Usage:
    if usage is None:
        return estimate_usage(request, text, tool_calls)
    return Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens, requests=1)


def _finish_reason(reason: str | None, tool_calls: tuple[ToolCall, ...]) -> FinishReason:
    # Several compatible servers report "stop" even when the turn is a tool call.
    if tool_calls:
        return "tool_calls"
    if reason is None:
        return "stop"
    return _FINISH_REASONS.get(reason, "other")
