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

from pydantic_core import to_json

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


# Every secret _SECRET_TEXT matches contains one of these. Events are redacted on the worker's hot path,
# and substring tests are several times cheaper than the regex on text that holds none (nearly all of it).
_MARKERS = ("opsk_", "earer", "EARER", "sk-", "AIza")


def redact_text(text: str) -> str:
    if not any(marker in text for marker in _MARKERS):
        return text
    return _SECRET_TEXT.sub(REDACTED, text)


# What the lower-cased JSON of a value holds if it holds a secret: a secret's shape (see _SECRET_TEXT) or a
# field named like a credential (see SECRET_FIELDS; '"' ends a field name, so "input_tokens" is no hit).
_TRACES = re.compile(rb"opsk_|bearer|sk-|aiza|password|cookie|authorization\"|key\"|secret\"|token\"")


def redact(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with its secrets replaced.

    Events are redacted on the worker's hot path and nearly none hold a secret: the value is
    first encoded once (in Rust) and searched for any trace of one; only then is it walked.
    """
    if _TRACES.search(to_json(value, fallback=repr).lower()) is None:
        return value
    return _walk(value)


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: REDACTED if _secret_field(key) else _walk(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item) for item in value]
    return value


def _secret_field(key: object) -> bool:
    if not isinstance(key, str):
        return False
    return key in SECRET_FIELDS or (not key.islower() and key.lower() in SECRET_FIELDS)


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
