"""Secrets are replaced in events, error messages and log lines."""

from __future__ import annotations

import logging

import pytest

from ops_core.keys import new_secret
from ops_core.redact import REDACTED, RedactingFilter, redact, redact_text

SECRETS = [
    new_secret().secret,
    "Bearer abc.def-ghi_jkl",
    "sk-proj-" + "a" * 40,
    "sk-ant-api03-" + "b" * 40,
    "AIza" + "c" * 35,
]


@pytest.mark.parametrize("secret", SECRETS)
def test_known_secret_shapes_are_replaced_in_text(secret: str) -> None:
    cleaned = redact_text(f"request failed: {secret} was refused")
    assert secret not in cleaned and REDACTED in cleaned
    assert cleaned.startswith("request failed: ") and cleaned.endswith(" was refused")


def test_credential_fields_are_replaced_whole_at_any_depth() -> None:
    payload = {
        "tool": "http_get",
        "arguments": {"url": "https://example.com", "headers": {"Authorization": "Basic dXNlcjpwYXNz"}},
        "results": [{"api_key": "plain-looking-value", "note": f"key {SECRETS[0]}"}],
        "tokens": 12,
    }
    cleaned = redact(payload)
    assert cleaned["arguments"]["headers"]["Authorization"] == REDACTED
    assert cleaned["results"][0]["api_key"] == REDACTED
    assert cleaned["results"][0]["note"] == f"key {REDACTED}"
    assert cleaned["arguments"]["url"] == "https://example.com" and cleaned["tokens"] == 12


def test_ordinary_text_is_left_alone() -> None:
    for text in ("What is 6 * 7?", "the bearer of bad news", "task-42 skipped", "sk-short"):
        assert redact_text(text) == text


def test_log_records_with_secrets_are_rewritten(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.redact")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="tests.redact"):
        logger.info("calling with %s", SECRETS[0])
        try:
            raise RuntimeError(f"boom {SECRETS[2]}")
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text
    assert all(secret not in text for secret in SECRETS)
    assert "calling with [redacted]" in text and "boom [redacted]" in text


def test_the_recorder_stores_events_without_secrets() -> None:
    import uuid
    from typing import Any, cast

    from ops_core.worker.recorder import EventRecorder

    recorder = EventRecorder(cast(Any, None), uuid.uuid4(), 1)
    recorder.add("tool_call", {"name": "fetch", "arguments": {"headers": {"Authorization": SECRETS[1]}}})
    recorder.add("tool_result", {"content": f"echo {SECRETS[0]}"})
    recorder.add("model_response", {"text": "plain", "usage": {"input_tokens": 3}})

    first, second, third = recorder.take()
    assert first.payload["arguments"]["headers"]["Authorization"] == REDACTED
    assert second.payload["content"] == f"echo {REDACTED}"
    assert third.payload == {"text": "plain", "usage": {"input_tokens": 3}}
