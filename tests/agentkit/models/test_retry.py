"""The shared retry policy and error classification, independent of any provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from agentkit.errors import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelRateLimitError,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
)
from agentkit.models._errors import body_message, parse_retry_after, status_error
from agentkit.models._retry import RetryPolicy, call_with_retry
from tests.agentkit.models.fakes.server import SleepRecorder


class Flaky:
    """Raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: ModelError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def _policy(sleeps: SleepRecorder, **overrides: float) -> RetryPolicy:
    settings: dict[str, float] = {"max_attempts": 4, "initial_backoff": 1.0, "jitter": 0.0, "max_backoff": 8.0}
    settings.update(overrides)
    return RetryPolicy(
        max_attempts=int(settings["max_attempts"]),
        initial_backoff=settings["initial_backoff"],
        jitter=settings["jitter"],
        max_backoff=settings["max_backoff"],
        max_retry_after=settings.get("max_retry_after", 60.0),
        max_total_wait=settings.get("max_total_wait", 90.0),
        sleep=sleeps,
    )


async def _run(attempt: Flaky, policy: RetryPolicy) -> str:
    return await call_with_retry(attempt, policy, provider="test", attempt_timeout=5.0)


async def test_backoff_is_exponential(sleeps: SleepRecorder) -> None:
    attempt = Flaky(ModelServerError("a"), ModelServerError("b"), ModelConnectionError("c"))
    assert await _run(attempt, _policy(sleeps)) == "done"
    assert sleeps.waits == [1.0, 2.0, 4.0]


async def test_jitter_stays_within_bounds(sleeps: SleepRecorder) -> None:
    attempt = Flaky(ModelServerError("a"), ModelServerError("b"))
    await _run(attempt, _policy(sleeps, jitter=0.5))
    assert 1.0 <= sleeps.waits[0] <= 1.5
    assert 2.0 <= sleeps.waits[1] <= 2.5


async def test_retry_after_wins_when_longer_and_is_capped(sleeps: SleepRecorder) -> None:
    attempt = Flaky(
        ModelRateLimitError("slow", retry_after=3.0),
        ModelRateLimitError("slower", retry_after=500.0),
        ModelRateLimitError("short", retry_after=0.1),
    )
    await _run(attempt, _policy(sleeps, max_retry_after=10.0))
    # max(backoff, retry_after) with retry_after capped at 10: max(1,3), max(2,10), max(4,0.1)
    assert sleeps.waits == [3.0, 10.0, 4.0]


async def test_attempts_are_bounded(sleeps: SleepRecorder) -> None:
    attempt = Flaky(*(ModelServerError(str(i)) for i in range(10)))
    with pytest.raises(ModelServerError, match="2"):
        await _run(attempt, _policy(sleeps, max_attempts=3))
    assert attempt.calls == 3


@pytest.mark.parametrize("max_attempts", [1, 2])
async def test_first_failure_counts_as_attempt_one(sleeps: SleepRecorder, max_attempts: int) -> None:
    # The first attempt runs outside tenacity; its failure must still use up attempt 1.
    errors = [ModelServerError(str(i)) for i in range(3)]
    attempt = Flaky(*errors)
    with pytest.raises(ModelServerError) as raised:
        await _run(attempt, _policy(sleeps, max_attempts=max_attempts))
    assert raised.value is errors[max_attempts - 1]
    assert attempt.calls == max_attempts
    assert sleeps.waits == [1.0][: max_attempts - 1]


async def test_total_wait_is_capped(sleeps: SleepRecorder) -> None:
    attempt = Flaky(*(ModelRateLimitError("busy", retry_after=30.0) for _ in range(10)))
    with pytest.raises(ModelRateLimitError):
        await _run(attempt, _policy(sleeps, max_attempts=10, max_total_wait=70.0))
    assert sleeps.waits == [30.0, 30.0]
    assert attempt.calls == 3


@pytest.mark.parametrize("error", [ModelAuthError("no"), ModelRequestError("bad"), ModelError("odd")])
async def test_permanent_errors_are_not_retried(sleeps: SleepRecorder, error: ModelError) -> None:
    attempt = Flaky(error)
    with pytest.raises(type(error)):
        await _run(attempt, _policy(sleeps))
    assert attempt.calls == 1
    assert sleeps.waits == []


async def test_streaming_caller_can_veto_a_retry(sleeps: SleepRecorder) -> None:
    attempt = Flaky(ModelServerError("mid-stream"))
    with pytest.raises(ModelServerError):
        await call_with_retry(attempt, _policy(sleeps), provider="t", attempt_timeout=5.0, may_retry=lambda: False)
    assert attempt.calls == 1


async def test_slow_attempt_becomes_a_timeout(sleeps: SleepRecorder) -> None:
    import asyncio

    calls = 0

    async def hang() -> str:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()  # never set: only the attempt timeout ends it
        return "unreachable"

    with pytest.raises(ModelTimeoutError):
        await call_with_retry(hang, _policy(sleeps, max_attempts=2), provider="t", attempt_timeout=0.05)
    assert calls == 2


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=20), usegmt=True), now=now.timestamp()) == 20.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=20), usegmt=True), now=now.timestamp()) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ModelRequestError),
        (401, ModelAuthError),
        (403, ModelAuthError),
        (404, ModelRequestError),
        (422, ModelRequestError),
        (429, ModelRateLimitError),
        (500, ModelServerError),
        (503, ModelServerError),
    ],
)
def test_status_classification(status: int, kind: type[ModelError]) -> None:
    error = status_error("openai", status, "provider said so", {"Retry-After": "4"})
    assert type(error) is kind
    assert error.status_code == status
    assert error.provider == "openai"
    assert "provider said so" in str(error)
    if isinstance(error, ModelRateLimitError):
        assert error.retry_after == 4.0


# What llama-cpp-python 0.3.36 answered (HTTP 500, as "error.message") to an assistant turn with "content": null.
_LLAMA_CPP_VALIDATION_MESSAGE = (Path(__file__).parent / "fakes" / "llama_cpp_validation_error.txt").read_text()


def test_a_validation_error_sent_as_text_is_cut_to_what_is_wrong() -> None:
    body = {"message": _LLAMA_CPP_VALIDATION_MESSAGE, "type": "internal_server_error", "param": None, "code": None}
    assert body_message(body, "Error code: 500") == (
        "body.messages.1.ChatCompletionRequestAssistantMessage.content: Input should be a valid string"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"detail": "Not Found"}, "Not Found"),
        (
            {"detail": [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]},
            "body.model: Field required",
        ),
        ("upstream connect error", "upstream connect error"),
        ({"error": "model not loaded"}, "model not loaded"),
        ({"status": "down"}, '{"status": "down"}'),
        ({}, "Error code: 503"),
        (None, "Error code: 503"),
    ],
)
def test_error_bodies_of_every_shape_keep_the_servers_words(body: object, message: str) -> None:
    assert body_message(body, "Error code: 503") == message
