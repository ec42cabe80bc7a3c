"""Provider rate limits shared by every worker: agentkit's ``RateLimiter``, kept in the database.

A worker process builds one :class:`SharedRateLimiter` from ``OPSCORE_RATE_LIMITS`` and
gives it to every model it builds. The budget lives in the ``rate_limits`` table
(:mod:`ops_core.db.ratelimits`), so all workers on all machines draw from the same one;
the process keeps only what is on its way there:

* a request that finds no call to the database in flight for its model goes at once; the
  requests that arrive while one is go together in the next (group commit, as the store's
  claims do), which starts :data:`MIN_SEND_INTERVAL_SECONDS` after the last one did at the
  earliest. A transaction costs the worker about 0.3 ms of CPU: without the interval a busy
  worker making a thousand model calls a second would send nearly as many
  (docs/benchmarks.md); with it, at most fifty, for at most 20 ms added to model calls
  that seldom take less than 200 ms;
* token corrections (a request's real usage against its estimate) ride along with the
  next call, or go on their own after :data:`SETTLE_DELAY_SECONDS`;
* a 429's hold goes at once.

If the database cannot be reached, waiting requests are told to try again after
:data:`UNAVAILABLE_RETRY_SECONDS` (their runs show the wait), rather than let
requests through unlimited.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping

from agentkit.models.gcra import RateLimit, extra_tokens, limits_for
from ops_core.db.ratelimits import RateLimitStore, Settlement
from ops_core.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

SETTLE_DELAY_SECONDS = 1.0
MIN_SEND_INTERVAL_SECONDS = 0.02
UNAVAILABLE_RETRY_SECONDS = 1.0


class _Model:
    """The requests, corrections and holds of one model on their way to its limits' rows."""

    def __init__(self, store: RateLimitStore, model: str, limits: dict[str, RateLimit]) -> None:
        self.store = store
        self.model = model
        self.limits = limits
        self.token_limited = any(limit.tpm is not None for limit in limits.values())
        self._takes: list[tuple[int, asyncio.Future[float]]] = []
        self._extra: defaultdict[str, float] = defaultdict(float)
        self._hold = 0.0
        self._sending: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, tokens: int) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._takes.append((tokens, future))
        self._send_soon()
        return await future

    def settle(self, estimated: int, used: int) -> None:
        for key, limit in self.limits.items():
            self._extra[key] += extra_tokens(limit, estimated, used)
        if self._sending is None:
            self._later(SETTLE_DELAY_SECONDS)

    def penalise(self, seconds: float) -> None:
        self._hold = max(self._hold, seconds)
        self._send_soon()

    def _send_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send(), name=f"rate limit {self.model}")

    async def _send(self) -> None:
        """One call to the database for what is waiting, then another while requests keep arriving.

        Token corrections ride along; left alone they wait for the settle timer.
        """
        started = -math.inf
        try:
            while True:
                # Requests arrived while the last transaction was in flight: the machine is busy, so let
                # more of them join this one. A request that finds nothing in flight goes at once.
                pause = started + MIN_SEND_INTERVAL_SECONDS - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                started = time.monotonic()
                takes = [(tokens, future) for tokens, future in self._takes if not future.done()]
                self._takes = []
                owed = Settlement({key: extra for key, extra in self._extra.items() if extra}, self._hold)
                self._extra.clear()
                self._hold = 0.0
                if not takes and not owed.extra_tokens and owed.hold_seconds <= 0:
                    break
                try:
                    waits = await self.store.apply(self.limits, [tokens for tokens, _ in takes], owed)
                except DatabaseUnavailable as exc:
                    self._keep(owed)
                    _resolve(takes, [UNAVAILABLE_RETRY_SECONDS] * len(takes))
                    log.warning("rate limits of %s: the database is unavailable (%s); retrying", self.model, exc)
                    if owed.extra_tokens or owed.hold_seconds > 0:
                        self._later(UNAVAILABLE_RETRY_SECONDS)
                    return
                except Exception as exc:
                    log.exception("rate limits of %s: the limiter failed", self.model)
                    for _, future in takes:
                        if not future.done():
                            future.set_exception(exc)
                    return
                _resolve(takes, waits)
                if not self._takes and self._hold <= 0:
                    break
        finally:
            self._sending = None
        if any(self._extra.values()):
            self._later(SETTLE_DELAY_SECONDS)

    def _later(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._send_soon)

    def _keep(self, owed: Settlement) -> None:
        for key, extra in owed.extra_tokens.items():
            self._extra[key] += extra
        self._hold = max(self._hold, owed.hold_seconds)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)
        if any(self._extra.values()):
            owed = Settlement(dict(self._extra))
            self._extra.clear()
            try:
                await self.store.apply(self.limits, [], owed)
            except DatabaseUnavailable:
                log.warning("rate limits of %s: token corrections lost at shutdown", self.model)


def _resolve(takes: list[tuple[int, asyncio.Future[float]]], waits: list[float]) -> None:
    for (_, future), wait in zip(takes, waits, strict=True):
        if not future.done():
            future.set_result(wait)


class SharedRateLimiter:
    """agentkit's :class:`~agentkit.models.RateLimiter` over the ``rate_limits`` table, for one worker process."""

    def __init__(self, store: RateLimitStore, limits: Mapping[str, RateLimit]) -> None:
        self._store = store
        self._limits = dict(limits)
        self._models: dict[str, _Model | None] = {}

    def _of(self, model: str) -> _Model | None:
        if model not in self._models:
            found = limits_for(self._limits, model)
            self._models[model] = _Model(self._store, model, found) if found else None
        return self._models[model]

    def covers(self, model: str) -> bool:
        return self._of(model) is not None

    async def acquire(self, model: str, tokens: int) -> float:
        of = self._of(model)
        return 0.0 if of is None else await of.acquire(tokens)

    async def settle(self, model: str, estimated: int, used: int) -> None:
        of = self._of(model)
        if of is not None and of.token_limited:
            of.settle(estimated, used)

    async def penalise(self, model: str, seconds: float) -> None:
        of = self._of(model)
        if of is not None:
            of.penalise(seconds)

    async def aclose(self) -> None:
        """Send what is still owed (token corrections), on the loop the limiter ran on."""
        await asyncio.gather(*(of.aclose() for of in self._models.values() if of is not None))
