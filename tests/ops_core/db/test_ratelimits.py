"""Provider rate limits in the store, on both backends: workers taking at once never overdraw the shared budget."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agentkit.models.gcra import RateLimit
from ops_core.db.ratelimits import RateLimitStore, Settlement
from ops_core.db.store import TaskStore
from ops_core.ratelimits import SharedRateLimiter

# Rows of rate_limits are not truncated between tests: each test uses keys of its own.


def model_key() -> str:
    return f"openai:m-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def limits_store(store: TaskStore) -> RateLimitStore:
    return RateLimitStore(store.engine)


async def test_a_batch_takes_what_conforms_and_tells_the_rest_how_long_to_wait(limits_store: RateLimitStore) -> None:
    key = model_key()
    waits = await limits_store.apply({key: RateLimit(rpm=60, burst=2)}, [0, 0, 0, 0])
    assert waits[:2] == [0.0, 0.0]
    # Nothing was taken for the last two: both may go once one more request has fitted, about a second on.
    assert waits[2] == pytest.approx(waits[3]) and 0.9 < waits[2] <= 1.0
    state = await limits_store.state(key)
    assert state is not None and state.token_tat == 0.0 and state.blocked_until == 0.0


async def test_token_corrections_and_a_hold_are_applied_before_the_takes(limits_store: RateLimitStore) -> None:
    key = model_key()
    limit = {key: RateLimit(tpm=600)}  # 10 tokens a second, 600 at once
    assert await limits_store.apply(limit, [600]) == [0.0]
    # The request used only 100: 500 come back, so 300 more fit now.
    assert await limits_store.apply(limit, [300], Settlement({key: -500})) == [0.0]
    [wait] = await limits_store.apply(limit, [300], Settlement({}, hold_seconds=30.0))
    assert 29.0 < wait <= 30.0
    state = await limits_store.state(key)
    # 300 + 300 of 600 taken, 500 given back: the bucket stands 400 tokens (40 s) ahead, the hold 30 s.
    assert state is not None and state.token_tat - state.blocked_until == pytest.approx(10.0, abs=0.5)


async def test_a_request_draws_from_its_models_and_its_providers_limit(limits_store: RateLimitStore) -> None:
    model, provider = model_key(), f"prov-{uuid.uuid4().hex[:8]}"
    limits = {model: RateLimit(rpm=6000), provider: RateLimit(rpm=6, burst=1)}
    assert await limits_store.apply(limits, [0]) == [0.0]
    [wait] = await limits_store.apply({model: limits[model]}, [0])
    assert wait == 0.0  # the model's own limit alone has room
    before = await limits_store.state(model)
    [wait] = await limits_store.apply(limits, [0])
    assert 9.0 < wait <= 10.0  # the provider's has not; and nothing was taken from the model's
    assert await limits_store.state(model) == before


async def test_concurrent_takers_never_overdraw(store: TaskStore) -> None:
    """Two processes' stores, each taking one request at a time in many concurrent transactions."""
    key = model_key()
    limits = {key: RateLimit(rpm=6, burst=10)}  # 10 at once, then one per 10 s: the test ends well before
    workers = [RateLimitStore(store.engine), RateLimitStore(store.engine)]
    waits = await asyncio.gather(*(workers[i % 2].apply(limits, [0]) for i in range(60)))
    granted = [w for [w] in waits if w == 0.0]
    assert len(granted) == 10
    assert all(0 < w <= 10.0 for [w] in waits if w != 0.0)


async def test_shared_limiters_of_two_processes_share_one_budget(store: TaskStore) -> None:
    """The limiter each worker process builds: many requests at once, grouped into few transactions."""
    key = model_key()
    limits = {key: RateLimit(rpm=6, burst=8)}
    limiters = [SharedRateLimiter(RateLimitStore(store.engine), limits) for _ in range(2)]
    waits = await asyncio.gather(*(limiters[i % 2].acquire(key, 100) for i in range(40)))
    assert sum(1 for w in waits if w == 0.0) == 8
    # A 429 seen by one process holds the other's requests too.
    await limiters[0].penalise(key, 20.0)
    await limiters[0].aclose()  # returns once what it had on its way is in the database
    assert 15.0 < await limiters[1].acquire(key, 1) <= 20.0
    await limiters[1].aclose()


async def test_a_batch_that_fits_is_taken_as_the_arithmetic_says(limits_store: RateLimitStore) -> None:
    """On PostgreSQL this batch takes the one-statement path: it must agree with agentkit's GCRA."""
    key = model_key()
    limit = {key: RateLimit(rpm=60, burst=5, tpm=6000)}  # 1 s per request, 10 ms per token
    assert await limits_store.apply(limit, [100, 200]) == [0.0, 0.0]
    state = await limits_store.state(key)
    assert state is not None
    # Two requests: 2 s ahead of the clock; 300 tokens: 3 s ahead, then 50 given back (0.5 s).
    assert state.token_tat - state.request_tat == pytest.approx(1.0, abs=0.01)
    assert await limits_store.apply(limit, [], Settlement({key: -50})) == []
    after = await limits_store.state(key)
    assert after is not None and after.token_tat == pytest.approx(state.token_tat - 0.5)
    assert after.request_tat == state.request_tat
