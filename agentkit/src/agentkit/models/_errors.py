"""Turn an HTTP failure into the agentkit :class:`ModelError` that describes it.

Each provider module pulls the status, message and headers out of its SDK's
own exception and hands them here, so every provider classifies failures the
same way (which ones are retryable, how ``Retry-After`` is read).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from agentkit.errors import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelRateLimitError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)

__all__ = ["body_message", "connection_error", "parse_retry_after", "status_error", "timeout_error"]


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


def body_message(body: object, fallback: str) -> str:
    """The human-readable message from an error body (``{"error": {"message": ...}}`` or flat)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message")
            if isinstance(message, str) and message:
                return message
        elif isinstance(inner, str) and inner:
            return inner
    return fallback


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


def status_error(provider: str, status: int, message: str, headers: Mapping[str, str] | None = None) -> ModelError:
    """The ModelError for an HTTP error status, keeping the provider's own message."""
    text = f"{provider} returned HTTP {status}: {message}"
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


def timeout_error(provider: str, timeout: float) -> ModelTimeoutError:
    return ModelTimeoutError(f"{provider} did not answer within {timeout:g}s", provider=provider)


def connection_error(provider: str, detail: str) -> ModelConnectionError:
    return ModelConnectionError(f"could not reach {provider}: {detail}", provider=provider)
