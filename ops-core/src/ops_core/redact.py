"""Secrets out of what ops-core writes down: events, error messages and log lines.

A secret can reach them without anyone meaning it to: a tool that echoes the
headers it was given, a provider error that quotes a request, a log line that
formats an exception. Two rules catch them: a value under a field whose name
says "credential" (``Authorization``, ``api_key``, ``password``, ...) is
replaced whole, and text that has the shape of a known secret (our keys, bearer
tokens, the providers' key formats) is replaced where it appears.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"

SECRET_FIELDS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "api_key",
        "apikey",
        "x-goog-api-key",
        "password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "cookie",
        "set-cookie",
    }
)

_SECRET_TEXT = re.compile(
    r"opsk_[0-9a-f]{16}_[A-Za-z0-9_-]{20,}"  # ops-core API keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"  # any bearer token
    r"|sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"  # OpenAI and Anthropic keys
    r"|AIza[0-9A-Za-z_-]{30,}"  # Google API keys
)


def redact_text(text: str) -> str:
    return _SECRET_TEXT.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with its secrets replaced."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and key.lower() in SECRET_FIELDS else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message holds a secret; leaves the others as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
