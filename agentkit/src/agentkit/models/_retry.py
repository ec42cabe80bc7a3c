"""The one retry policy every provider client uses (the SDKs' own retries are off).

Retryable :class:`ModelError` subclasses (429, 5xx, timeouts, dropped
connections) are retried with exponential backoff plus jitter; a 429's
``Retry-After`` stretches the wait (never shrinks it) up to a cap. The number
of attempts and the total time spent sleeping are both bounded. Everything
else is raised at once.

With a rate limiter (a :class:`~agentkit.models._gate.RequestGate`), every attempt
first takes its budget, outside the attempt's timeout, and settles it after.
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
from agentkit.models._gate import RequestGate
from agentkit.models.base import ModelResponse

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
    before_attempt: Callable[[], Awaitable[None]] | None = None,
    backoff_sleep: SleepFn | None = None,
) -> T:
    """Run ``attempt`` under ``policy``; the last ModelError is raised unchanged when giving up.

    Each attempt is cut off after ``attempt_timeout`` seconds even if the server keeps
    trickling bytes, which the HTTP client's per-read timeout would allow.
    ``may_retry`` lets a streaming caller refuse a retry once it has already
    handed deltas to its consumer, since a second attempt would repeat them.
    ``before_attempt`` runs before each attempt, outside its timeout (a rate
    limiter's wait); ``backoff_sleep`` replaces the policy's sleep between attempts.
    """

    async def bounded() -> T:
        if before_attempt is not None:
            await before_attempt()
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
        sleep=backoff_sleep or policy.sleep,
        stop=_AttemptsOrTotalWait(policy),
        wait=_BackoffOrRetryAfter(policy),
        retry=retry_if_exception(retryable),
        reraise=True,
    )
    return await retrying(attempt_after_first)


async def request_with_retry(
    *,
    complete: Callable[[], Awaitable[ModelResponse]],
    stream: Callable[[Callable[[str], Awaitable[None]]], Awaitable[ModelResponse]],
    on_delta: Callable[[str], Awaitable[None]] | None,
    policy: RetryPolicy,
    provider: str,
    attempt_timeout: float,
    gate: RequestGate | None = None,
) -> ModelResponse:
    """One model request under ``policy``: plain, or streamed to ``on_delta`` when one is given.

    A stream that has already passed text on is never retried: the host would
    see that text twice. ``gate`` is the request's rate limiter, if one applies.
    """
    emitted = False

    async def forward(text: str) -> None:
        nonlocal emitted
        emitted = True
        assert on_delta is not None
        await on_delta(text)

    async def attempt() -> ModelResponse:
        if on_delta is None:
            return await complete()
        return await stream(forward)

    if gate is None:
        return await call_with_retry(
            attempt, policy, provider=provider, attempt_timeout=attempt_timeout, may_retry=lambda: not emitted
        )

    async def gated() -> ModelResponse:
        try:
            response = await attempt()
        except Exception as error:
            await gate.failed(error)
            raise
        await gate.succeeded(response.usage)
        return response

    return await call_with_retry(
        gated,
        policy,
        provider=provider,
        attempt_timeout=attempt_timeout,
        may_retry=lambda: not emitted,
        before_attempt=gate.enter,
        backoff_sleep=gate.backoff(policy.sleep),
    )
