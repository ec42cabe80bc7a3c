"""A worker's shared rate limiter without a database: what it sends, when, and in how many calls."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from agentkit.models.gcra import RateLimit
from ops_core import ratelimits
from ops_core.db.ratelimits import Settlement
from ops_core.errors import DatabaseUnavailable
from ops_core.ratelimits import SharedRateLimiter

MODEL = "openai:m"


class FakeStore:
    """Records each call; answers 0.0 for the first ``room`` requests, then 1.0; can be made unavailable."""

    def __init__(self, room: int = 1000) -> None:
        self.calls: list[tuple[list[int], Settlement | None]] = []
        self.room = room
        self.down = False
        self.called = asyncio.Event()

    async def apply(
        self, limits: Mapping[str, RateLimit], takes: Sequence[int], settlement: Settlement | None = None
    ) -> list[float]:
        self.calls.append((list(takes), settlement))
        self.called.set()
        await asyncio.sleep(0)  # a round trip: others arrive meanwhile
        if self.down:
            raise DatabaseUnavailable("the database is unreachable")
        waits = []
        for _ in takes:
            waits.append(0.0 if self.room > 0 else 1.0)
            self.room -= 1
        return waits


def limiter(store: FakeStore, **limits: RateLimit) -> SharedRateLimiter:
    return SharedRateLimiter(store, limits or {MODEL: RateLimit(rpm=60, tpm=6000)})  # type: ignore[arg-type]


async def test_requests_that_arrive_together_go_in_one_call() -> None:
    store = FakeStore(room=3)
    shared = limiter(store)
    waits = await asyncio.gather(*(shared.acquire(MODEL, 10 * i) for i in range(5)))
    assert waits == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert [takes for takes, _ in store.calls] == [[0, 10, 20, 30, 40]]


async def test_requests_arriving_during_a_call_go_in_the_next() -> None:
    store = FakeStore()
    shared = limiter(store)
    first = asyncio.ensure_future(shared.acquire(MODEL, 1))
    await store.called.wait()
    later = [asyncio.ensure_future(shared.acquire(MODEL, 2)) for _ in range(3)]
    await asyncio.gather(first, *later)
    assert [takes for takes, _ in store.calls] == [[1], [2, 2, 2]]


async def test_an_unlimited_model_costs_nothing() -> None:
    store = FakeStore()
    shared = limiter(store)
    assert not shared.covers("anthropic:x")
    assert await shared.acquire("anthropic:x", 10) == 0.0
    await shared.settle("anthropic:x", 10, 20)
    await shared.penalise("anthropic:x", 5.0)
    assert store.calls == []


async def test_corrections_ride_with_the_next_call_or_go_after_a_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimits, "SETTLE_DELAY_SECONDS", 0.01)
    store = FakeStore()
    shared = limiter(store)
    await shared.settle(MODEL, estimated=600, used=100)
    await shared.settle(MODEL, estimated=600, used=700)
    assert await shared.acquire(MODEL, 5) == 0.0
    assert store.calls == [([5], Settlement({MODEL: -400.0}, 0.0))]
    store.called.clear()
    await shared.settle(MODEL, estimated=10, used=30)
    await asyncio.wait_for(store.called.wait(), 5)  # nobody asks: the delay sends it on its own
    assert store.calls[-1] == ([], Settlement({MODEL: 20.0}, 0.0))
    await shared.aclose()


async def test_a_429_is_sent_at_once() -> None:
    store = FakeStore()
    shared = limiter(store)
    await shared.penalise(MODEL, 7.0)
    await asyncio.wait_for(store.called.wait(), 5)
    assert store.calls == [([], Settlement({}, 7.0))]
    await shared.aclose()


async def test_without_the_database_requests_wait_and_nothing_owed_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimits, "UNAVAILABLE_RETRY_SECONDS", 0.01)
    store = FakeStore()
    store.down = True
    shared = limiter(store)
    await shared.penalise(MODEL, 3.0)
    assert await shared.acquire(MODEL, 5) == 0.01
    store.down = False
    store.called.clear()
    await asyncio.wait_for(store.called.wait(), 5)  # the hold is sent again once the pause is over
    held: Any = store.calls[-1][1]
    assert held.hold_seconds == 3.0
    await shared.aclose()
