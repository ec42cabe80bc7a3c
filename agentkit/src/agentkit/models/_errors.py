"""Turn an HTTP failure into the agentkit :class:`ModelError` that describes it.

Each provider module pulls the status, message and headers out of its SDK's
own exception and hands them here, so every provider classifies failures the
same way (which ones are retryable, how ``Retry-After`` is read, what an error
body says, and which root cause a request without an HTTP answer had).
"""

from __future__ import annotations

import ast
import json
import socket
import ssl
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from agentkit.errors import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelRateLimitError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)

__all__ = [
    "body_message",
    "empty_response_error",
    "missing_v1_hint",
    "parse_retry_after",
    "status_error",
    "timeout_error",
    "transport_error",
]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; a naive result means the zone was "-0000".
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


_BODY_LIMIT = 500


def body_message(body: object, fallback: str) -> str:
    """The human-readable message from an error body, whatever its shape.

    Providers answer ``{"error": {"message": ...}}``; servers built on FastAPI
    (vLLM, llama-cpp-python) may answer ``{"detail": "Not Found"}`` or a list of
    validation errors; some answer plain text. ``fallback`` is for an empty body.
    """
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, str) and inner:
            return _clip(inner)
        if isinstance(inner, dict):
            message = inner.get("message")
            if isinstance(message, str) and message:
                return _clip(_validation_text(message) or message)
            detail = _detail(inner.get("detail"))
            if detail:
                return _clip(detail)
        if body:
            return _clip(json.dumps(body, default=str))
    elif isinstance(body, str) and body.strip():
        return _clip(_validation_text(body) or body.strip())
    return fallback


def _detail(detail: object) -> str | None:
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list):
        return _validation_problems([item for item in detail if isinstance(item, dict)])
    return None


def _validation_text(text: str) -> str | None:
    """The gist of a pydantic/FastAPI validation error that a server sent as text.

    llama-cpp-python answers a request it cannot validate with HTTP 500 and
    ``str(RequestValidationError)``: a count, then one ``repr`` of an error dict
    per line, the useful one often past the first few hundred characters.
    """
    if "validation error" not in text:
        return None
    items: list[dict[str, object]] = []
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            item = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(item, dict):
            items.append(item)
    return _validation_problems(items)


def _validation_problems(items: list[dict[str, object]]) -> str | None:
    """``loc: msg`` for each error, leaving out the union members a field's literal already ruled out.

    A message that fails validation is checked against every member of the
    message union (system, user, assistant, tool...); the members whose
    ``role`` did not match say nothing about what is wrong.
    """
    located = [(_loc(item.get("loc")), item) for item in items if isinstance(item.get("msg"), str)]
    ruled_out = {loc[:-1] for loc, item in located if item.get("type") == "literal_error" and len(loc) > 1}
    relevant = [(loc, item) for loc, item in located if not any(loc[: len(p)] == p for p in ruled_out)]
    problems = [f"{'.'.join(loc)}: {item['msg']}" if loc else str(item["msg"]) for loc, item in relevant or located]
    return "; ".join(problems) or None


def _loc(loc: object) -> tuple[str, ...]:
    return tuple(str(part) for part in loc) if isinstance(loc, list | tuple) else ()


def _clip(text: str) -> str:
    return text if len(text) <= _BODY_LIMIT else text[: _BODY_LIMIT - 3] + "..."


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    # SDK header objects are case-insensitive already; a plain dict may not be.
    direct = headers.get(name)
    if direct is not None:
        return direct
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def status_error(
    provider: str, status: int, message: str, headers: Mapping[str, str] | None = None, *, hint: str = ""
) -> ModelError:
    """The ModelError for an HTTP error status, keeping the provider's own message (and ``hint``, if any)."""
    text = f"{provider} returned HTTP {status}: {message}"
    if hint:
        text = f"{text} ({hint})"
    if status == 429:
        retry_after = parse_retry_after(_header(headers, "retry-after"))
        return ModelRateLimitError(text, provider=provider, status_code=status, retry_after=retry_after)
    if status in (401, 403):
        return ModelAuthError(text, provider=provider, status_code=status)
    if status == 408:
        return ModelTimeoutError(text, provider=provider, status_code=status)
    if status >= 500:
        return ModelServerError(text, provider=provider, status_code=status)
    # 400, 404, 409, 413, 422 and the rest of 4xx: the request itself is wrong.
    return ModelRequestError(text, provider=provider, status_code=status)


def missing_v1_hint(base_url: str) -> str:
    """For a 404 from an OpenAI-compatible server: the usual cause is a base URL without ``/v1``."""
    segments = [part for part in urlsplit(base_url).path.split("/") if part]
    if "v1" in segments:
        return ""
    return (
        f"the base URL {base_url} has no /v1 path segment; OpenAI-compatible servers usually serve "
        "/v1/chat/completions, so try the base URL ending in /v1"
    )


def timeout_error(provider: str, timeout: float) -> ModelTimeoutError:
    return ModelTimeoutError(f"{provider} did not answer within {timeout:g}s", provider=provider)


def transport_error(
    provider: str,
    error: BaseException,
    *,
    timeout: float,
    base_url: str,
    timeout_types: tuple[type[BaseException], ...] = (),
) -> ModelError:
    """The ModelError for a request that got no HTTP answer, named after its root cause.

    The SDKs' aiohttp transport reports every failed connect as a connect
    *timeout* (openai) or a bare aiohttp error (google-genai), so the chain of
    causes is what tells a refused port or an unknown host from a server that
    is merely slow. ``timeout_types`` are the transport's own timeout
    exceptions, which need not subclass :class:`TimeoutError`.
    """
    causes = _causes(error)
    where = f"{provider} at {base_url}"
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return ModelConnectionError(
                f"could not reach {where}: cannot resolve the host ({cause})", provider=provider
            )
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return ModelConnectionError(
                f"could not reach {where}: connection refused (is the server running and listening there?)",
                provider=provider,
            )
    for cause in causes:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return ModelConnectionError(f"could not reach {where}: TLS failure ({cause})", provider=provider)
    for cause in causes:
        if isinstance(cause, (TimeoutError, *timeout_types)):
            return timeout_error(provider, timeout)
    root = causes[-1]
    detail = str(root) or type(root).__name__
    return ModelConnectionError(f"could not reach {where}: {detail}", provider=provider)


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and everything it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        # The same rule as a traceback's: an explicit cause, else the implicit context unless suppressed.
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def empty_response_error(provider: str) -> ModelServerError:
    """A stream that ended before any content or finish reason: the server failed, and may not next time."""
    return ModelServerError(
        f"{provider} ended the response stream without any content or finish reason (an empty response)",
        provider=provider,
    )
