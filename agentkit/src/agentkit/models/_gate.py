"""One request's dealings with a :class:`~agentkit.models.ratelimit.RateLimiter`.

Before each attempt (the retry loop's included) the gate takes the request's
budget, sleeping exactly until the limiter says it may be there and asking
again, never polling. After the attempt it settles the estimate with the real
usage; a 429 penalises the model for everyone who shares the limiter. Each
sleep is told to the run (``rate_limit_wait``). Cancelling the request's task
interrupts a sleep like any other await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agentkit.errors import ModelRateLimitError
from agentkit.messages import Usage
from agentkit.models.base import ModelRequest
from agentkit.models.ratelimit import RateLimiter, RateLimitWait, estimate_tokens, notify_wait

__all__ = ["FALLBACK_PENALTY_SECONDS", "RequestGate", "gate_for"]

FALLBACK_PENALTY_SECONDS = 1.0
"""How long a 429 without ``Retry-After`` holds the model's limit for everyone."""

Sleep = Callable[[float], Awaitable[None]]


def gate_for(
    limiter: RateLimiter | None, model: str, request: ModelRequest, *, sleep: Sleep = asyncio.sleep
) -> RequestGate | None:
    """The gate of one request, or None when no limit applies to ``model``."""
    if limiter is None or not limiter.covers(model):
        return None
    return RequestGate(limiter, model, estimate_tokens(request), sleep=sleep)


class RequestGate:
    def __init__(self, limiter: RateLimiter, model: str, tokens: int, *, sleep: Sleep = asyncio.sleep) -> None:
        self.limiter = limiter
        self.model = model
        self.tokens = tokens
        self._sleep = sleep
        self._rejected = False

    async def enter(self) -> None:
        """Take the budget of one attempt, waiting as long as the limiter says."""
        self._rejected = False
        while True:
            wait = await self.limiter.acquire(self.model, self.tokens)
            if wait <= 0:
                return
            await notify_wait(RateLimitWait(self.model, wait, "rate_limit"))
            await self._sleep(wait)

    async def succeeded(self, usage: Usage) -> None:
        if usage.total_tokens != self.tokens:
            await self.limiter.settle(self.model, self.tokens, usage.total_tokens)

    async def failed(self, error: Exception) -> None:
        """An attempt failed: its tokens go back; a 429 holds everyone's requests for this model."""
        await self.limiter.settle(self.model, self.tokens, 0)
        if isinstance(error, ModelRateLimitError):
            self._rejected = True
            retry_after = error.retry_after if error.retry_after is not None else FALLBACK_PENALTY_SECONDS
            await self.limiter.penalise(self.model, retry_after)

    def backoff(self, sleep: Sleep) -> Sleep:
        """``sleep`` for the retry loop's backoff, reporting the waits that follow a 429."""

        async def reported(seconds: float) -> None:
            if self._rejected:
                await notify_wait(RateLimitWait(self.model, seconds, "provider_429"))
            await sleep(seconds)

        return reported
