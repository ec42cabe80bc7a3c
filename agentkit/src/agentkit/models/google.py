"""Gemini through ``google-genai`` with function calling (functionCall / functionResponse parts).

The SDK is imported lazily so that ``import agentkit.models`` works without
the ``agentkit[google]`` extra. Only the Gemini Developer API (API key) is
supported; Vertex AI is deliberately switched off so an ambient
``GOOGLE_GENAI_USE_VERTEXAI`` cannot reroute requests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

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
from agentkit.models._clients import LoopClients
from agentkit.models._env import missing_sdk, resolve_api_key, resolve_optional
from agentkit.models._errors import body_message, empty_response_error, status_error, transport_error
from agentkit.models._gate import gate_for
from agentkit.models._retry import RetryPolicy, request_with_retry
from agentkit.models._usage import estimate_usage
from agentkit.models.base import DeltaCallback, Model, ModelRequest, ModelResponse
from agentkit.models.ratelimit import RateLimiter

if TYPE_CHECKING:
    from google.genai import Client
    from google.genai import types as genai_types

__all__ = ["DEFAULT_BASE_URL", "GoogleModel"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"

# Gemini may omit functionCall ids. agentkit needs one to pair results, so it
# makes one up, marks it with this prefix and never sends it back to Gemini.
_LOCAL_ID_PREFIX = "agentkit-gemini-"

_FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "MALFORMED_RESPONSE": "error",
}

KEY_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
"""Where the key is read from when none is passed, in order."""


class GoogleModel(Model):
    """A Gemini model. ``api_key`` overrides ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``.

    ``base_url`` (or ``GOOGLE_GEMINI_BASE_URL``) points the client elsewhere, e.g. a local fake.
    """

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        try:
            import google.genai  # noqa: F401 - fail at build time, not on the first request
        except ImportError as exc:
            raise missing_sdk("google", "google-genai", "google", exc) from exc
        self._model_name = model_name
        self._api_key = resolve_api_key("google", api_key, *KEY_ENV)
        self._base_url = resolve_optional(base_url, "GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
        self._retry = retry or RetryPolicy()
        self._rate_limiter = rate_limiter
        self._clients: LoopClients[Client] = LoopClients(self._build_client, _close_client)

    @property
    def name(self) -> str:
        return f"google:{self._model_name}"

    @property
    def base_url(self) -> str:
        return self._base_url

    async def request(self, request: ModelRequest, *, on_delta: DeltaCallback | None = None) -> ModelResponse:
        _guard.check_real_request("google", self._base_url)
        contents = _contents(request.messages)
        timeout = request.settings.timeout
        config = _config(request, timeout)
        # The client is leased outside the timed attempts, so building one never eats the timeout.
        with self._clients.lease() as client:
            return await request_with_retry(
                complete=lambda: self._complete(client, request, contents, config, timeout),
                stream=lambda forward: self._stream(client, request, contents, config, timeout, forward),
                on_delta=on_delta,
                policy=self._retry,
                provider="google",
                attempt_timeout=timeout,
                gate=gate_for(self._rate_limiter, self.name, request, sleep=self._retry.sleep),
            )

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _build_client(self) -> Client:
        from google.genai import Client
        from google.genai import types as genai_types

        options = genai_types.HttpOptions(
            base_url=self._base_url,
            # attempts=1: agentkit's RetryPolicy is the only retry layer.
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        return Client(api_key=self._api_key, vertexai=False, http_options=options)

    async def _complete(
        self,
        client: Client,
        request: ModelRequest,
        contents: list[genai_types.Content],
        config: genai_types.GenerateContentConfig,
        limit: float,
    ) -> ModelResponse:
        async with self._translate_errors(limit):
            response = await client.aio.models.generate_content(
                model=self._model_name, contents=contents, config=config
            )
        accumulator = _Accumulator()
        accumulator.add(response)
        return accumulator.response(self.name, request)

    async def _stream(
        self,
        client: Client,
        request: ModelRequest,
        contents: list[genai_types.Content],
        config: genai_types.GenerateContentConfig,
        limit: float,
        on_delta: DeltaCallback,
    ) -> ModelResponse:
        accumulator = _Accumulator()
        async with self._translate_errors(limit):
            stream = await client.aio.models.generate_content_stream(
                model=self._model_name, contents=contents, config=config
            )
            async for chunk in stream:
                delta = accumulator.add(chunk)
                if delta:
                    await on_delta(delta)
        if accumulator.empty:
            raise empty_response_error("google")
        return accumulator.response(self.name, request)

    @asynccontextmanager
    async def _translate_errors(self, limit: float) -> AsyncIterator[None]:
        """Map google-genai, httpx2 and aiohttp exceptions raised inside the block to agentkit ModelErrors.

        google-genai uses aiohttp for async calls when it is installed and lets
        its errors through unwrapped; without this they would escape ``Agent.run``.
        """
        import httpx2
        from google.genai import errors as genai_errors

        transport: tuple[type[BaseException], ...] = (httpx2.TransportError, OSError, TimeoutError)
        try:
            import aiohttp

            transport = (*transport, aiohttp.ClientError)
        except ImportError:  # pragma: no cover - the google extra installs aiohttp
            pass
        try:
            yield
        except genai_errors.APIError as exc:
            headers: Any = getattr(exc.response, "headers", None)
            message = exc.message or body_message(exc.details, str(exc))
            raise status_error("google", exc.code, message, headers) from exc
        except transport as exc:
            raise transport_error(
                "google", exc, timeout=limit, base_url=self._base_url, timeout_types=(httpx2.TimeoutException,)
            ) from exc


class _Accumulator:
    """Folds one response, or each chunk of a stream, into a ModelResponse.

    Gemini streams whole functionCall parts (never fragments), and each
    chunk's usage_metadata is cumulative, so the last one wins.
    """

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: list[ToolCall] = []
        self._finish: str | None = None
        self._blocked = False
        self._usage: Usage | None = None

    def add(self, chunk: genai_types.GenerateContentResponse) -> str:
        delta: list[str] = []
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason is not None:
            self._blocked = True
        if chunk.candidates:
            candidate = chunk.candidates[0]
            if candidate.finish_reason is not None:
                self._finish = candidate.finish_reason.value
            parts = candidate.content.parts if candidate.content is not None else None
            for part in parts or ():
                if part.thought:
                    continue
                if part.text:
                    delta.append(part.text)
                if part.function_call is not None:
                    self._calls.append(_tool_call(part.function_call))
        if chunk.usage_metadata is not None:
            meta = chunk.usage_metadata
            # Thinking tokens are billed as output but reported apart from candidates.
            output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
            self._usage = Usage(input_tokens=meta.prompt_token_count or 0, output_tokens=output, requests=1)
        text = "".join(delta)
        self._text.append(text)
        return text

    @property
    def empty(self) -> bool:
        """No chunk brought text, a call, a finish reason or a block: the stream said nothing."""
        return not any(self._text) and not self._calls and self._finish is None and not self._blocked

    def response(self, model_name: str, request: ModelRequest) -> ModelResponse:
        finish: FinishReason
        if self._calls:
            finish = "tool_calls"
        elif self._blocked:
            finish = "content_filter"
        elif self._finish is None:
            finish = "stop"
        else:
            finish = _FINISH_REASONS.get(self._finish, "other")
        text = "".join(self._text) or None
        usage = self._usage or estimate_usage(request, text, self._calls)
        return ModelResponse(
            text=text,
            tool_calls=tuple(self._calls),
            usage=usage,
            finish_reason=finish,
            model_name=model_name,
        )


def _tool_call(call: genai_types.FunctionCall) -> ToolCall:
    if not call.name:
        raise ModelError("google returned a function call without a name", provider="google")
    call_id = call.id or f"{_LOCAL_ID_PREFIX}{uuid.uuid4().hex[:12]}"
    return ToolCall(id=call_id, name=call.name, arguments=dict(call.args or {}))


def _remote_id(call_id: str) -> str | None:
    return None if call_id.startswith(_LOCAL_ID_PREFIX) else call_id


def _contents(messages: Sequence[Message]) -> list[genai_types.Content]:
    """Gemini turns are "user" and "model"; function responses ride in a user turn.

    Consecutive same-role turns are merged so every functionResponse for one
    model turn arrives together, as Gemini requires.
    """
    from google.genai import types as genai_types

    contents: list[genai_types.Content] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        role, parts = _parts(message)
        if not parts:
            continue
        if contents and contents[-1].role == role and contents[-1].parts is not None:
            contents[-1].parts.extend(parts)
        else:
            contents.append(genai_types.Content(role=role, parts=parts))
    return contents


def _parts(message: Message) -> tuple[str, list[genai_types.Part]]:
    from google.genai import types as genai_types

    if isinstance(message, AssistantMessage):
        parts: list[genai_types.Part] = []
        if message.content:
            parts.append(genai_types.Part(text=message.content))
        for call in message.tool_calls:
            remote = genai_types.FunctionCall(id=_remote_id(call.id), name=call.name, args=call.arguments)
            parts.append(genai_types.Part(function_call=remote))
        return "model", parts
    if isinstance(message, ToolResultMessage):
        payload = {"error": message.content} if message.is_error else {"result": message.content}
        response = genai_types.FunctionResponse(
            id=_remote_id(message.tool_call_id), name=message.name, response=payload
        )
        return "user", [genai_types.Part(function_response=response)]
    if isinstance(message, SystemMessage):
        return "user", []
    return "user", [genai_types.Part(text=message.content)]


async def _close_client(client: Client) -> None:
    # The SDK opens a sync and an async HTTP client; close both so no socket leaks.
    await client.aio.aclose()
    client.close()


def _config(request: ModelRequest, timeout: float) -> genai_types.GenerateContentConfig:
    from google.genai import types as genai_types

    system = "\n\n".join(m.content for m in request.messages if isinstance(m, SystemMessage))
    tools: list[genai_types.Tool] | None = None
    if request.tools:
        declarations = [
            genai_types.FunctionDeclaration(name=t.name, description=t.description, parameters_json_schema=t.parameters)
            for t in request.tools
        ]
        tools = [genai_types.Tool(function_declarations=declarations)]
    # AUTO is Gemini's default, said explicitly as the OpenAI client must (see openai.py).
    tool_config = (
        genai_types.ToolConfig(function_calling_config=genai_types.FunctionCallingConfig(mode="AUTO"))
        if tools
        else None
    )
    return genai_types.GenerateContentConfig(
        # Per request, merged over the client's options: the timeout is in milliseconds.
        http_options=genai_types.HttpOptions(timeout=max(1, round(timeout * 1000))),
        system_instruction=system or None,
        tools=tools,
        tool_config=tool_config,
        temperature=request.settings.temperature,
        max_output_tokens=request.settings.max_tokens,
        # agentkit runs the tools itself; the SDK must only report function calls.
        automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
    )
