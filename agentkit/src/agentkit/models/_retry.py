"""The one retry policy every provider client uses (the SDKs' own retries are off).

Retryable :class:`ModelError` subclasses (429, 5xx, timeouts, dropped
connections) are retried with exponential backoff plus jitter; a 429's
``Retry-After`` stretches the wait (never shrinks it) up to a cap. The number
of attempts and the total time spent sleeping are both bounded. Everything
else is raised at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential_jitter

from agentkit.errors import ModelError, ModelRateLimitError
from agentkit.models._errors import timeout_error

__all__ = ["RetryPolicy", "call_with_retry"]

T = TypeVar("T")
SleepFn = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How a provider client retries one model request.

    ``sleep`` is injectable so tests can record waits instead of waiting.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    jitter: float = 0.5
    max_retry_after: float = 60.0
    max_total_wait: float = 90.0
    sleep: SleepFn = field(default=asyncio.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


class _BackoffOrRetryAfter(wait_base):
    """Exponential backoff with jitter, raised to the server's Retry-After when larger."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._backoff = wait_exponential_jitter(
            initial=policy.initial_backoff, max=policy.max_backoff, jitter=policy.jitter
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self._backoff(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, ModelRateLimitError) and error.retry_after is not None:
            return max(backoff, min(error.retry_after, self._policy.max_retry_after))
        return backoff


class _AttemptsOrTotalWait(stop_base):
    """Stop after ``max_attempts`` or when the next sleep would exceed the total wait budget."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number >= self._policy.max_attempts:
            return True
        return retry_state.idle_for + retry_state.upcoming_sleep > self._policy.max_total_wait


async def call_with_retry(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    provider: str,
    attempt_timeout: float,
    may_retry: Callable[[], bool] = lambda: True,
) -> T:
    """Run ``attempt`` under ``policy``; the last ModelError is raised unchanged when giving up.

    Each attempt is cut off after ``attempt_timeout`` seconds even if the server keeps
    trickling bytes, which the HTTP client's per-read timeout would allow.
    ``may_retry`` lets a streaming caller refuse a retry once it has already
    handed deltas to its consumer, since a second attempt would repeat them.
    """

    async def bounded() -> T:
        try:
            async with asyncio.timeout(attempt_timeout):
                return await attempt()
        except TimeoutError as exc:
            raise timeout_error(provider, attempt_timeout) from exc

    def retryable(error: BaseException) -> bool:
        return isinstance(error, ModelError) and error.retryable and may_retry()

    # Setting up tenacity costs real CPU on every model call and nearly every call succeeds
    # at once, so the first attempt runs bare. Tenacity takes over only after a retryable
    # failure, and replays that failure as its own attempt 1: attempts, waits (a 429's
    # Retry-After included) and the total wait budget come out exactly as if it had run it.
    try:
        return await bounded()
    except Exception as error:
        if policy.max_attempts == 1 or not retryable(error):
            raise
        replay = [error]

    async def attempt_after_first() -> T:
        if replay:
            raise replay.pop()
        return await bounded()

    retrying = AsyncRetrying(
        sleep=policy.sleep,
        stop=_AttemptsOrTotalWait(policy),
        wait=_BackoffOrRetryAfter(policy),
        retry=retry_if_exception(retryable),
        reraise=True,
    )
    return await retrying(attempt_after_first)


async def request_with_retry(
    *,
    complete: Callable[[], Awaitable[T]],
    stream: Callable[[Callable[[str], Awaitable[None]]], Awaitable[T]],
    on_delta: Callable[[str], Awaitable[None]] | None,
    policy: RetryPolicy,
    provider: str,
    attempt_timeout: float,
) -> T:
    """One model request under ``policy``: plain, or streamed to ``on_delta`` when one is given.

    A stream that has already passed text on is never retried: the host would
    see that text twice.
    """
    if on_delta is None:
        return await call_with_retry(complete, policy, provider=provider, attempt_timeout=attempt_timeout)
    emitted = False

    async def forward(text: str) -> None:
        nonlocal emitted
        emitted = True
        await on_delta(text)

    return await call_with_retry(
        lambda: stream(forward),
        policy,
        provider=provider,
        attempt_timeout=attempt_timeout,
        may_retry=lambda: not emitted,
    )
