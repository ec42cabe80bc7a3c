"""Provider rate limits, live: two worker pools share one budget at a provider that enforces its own.

The fake provider answers 429 above 60 requests per minute, as a real one does. With the same limit in
``OPSCORE_RATE_LIMITS``, the requests of both pools together keep to it: the timeline of their arrivals
stays within the GCRA bound (the burst, then one a second), and the provider never has to say 429.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Deployment, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RPM = 60
BURST = 5
TASKS = 25  # one model call each: the burst at once, then 20 more, one a second
# Requests are granted by the database's clock and reach the provider a moment later: two granted a
# second apart may arrive a little less apart. The provider allows this much jitter; the test checks
# the timeline with one request of slack for it.
ARRIVAL_JITTER_SECONDS = 0.5


@pytest.fixture(scope="module")
def limited(deployments: DeploymentFactory) -> Deployment:
    """Two worker pools (one process each, 8 runs at once each) with the provider's limit as theirs."""
    env = {"OPSCORE_RATE_LIMITS": f"openai:fake rpm={RPM} burst={BURST}"}
    deployment = deployments(workers=2, env=env)
    deployment.fake.enforce(RPM, burst=BURST, slack=ARRIVAL_JITTER_SECONDS)
    return deployment


async def test_two_pools_keep_to_a_shared_limit_and_provoke_no_429(limited: Deployment) -> None:
    async with limited.client() as client:
        stack = Stack(limited, client)
        await stack.wait_workers(2)
        arrived_before = len(limited.fake.arrivals)
        tasks = await asyncio.gather(*(stack.submit(goal=f"say hello {i}", model="openai:fake") for i in range(TASKS)))
        done = await asyncio.gather(*(stack.wait_status(t["id"], TERMINAL, timeout=90) for t in tasks))
        assert [t["status"] for t in done] == ["completed"] * TASKS, stack.logs()
        events = await asyncio.gather(*(stack.events(t["id"]) for t in tasks))
        workers = {t["worker_id"] for t in done}

    arrivals = sorted(limited.fake.arrivals[arrived_before:])
    assert limited.fake.rejected == 0
    assert len(arrivals) == TASKS  # one call per task: nothing was retried
    assert len(workers) == 2, "both pools ran tasks"
    # Any stretch of the timeline holds at most the burst plus one a second (and one request of slack).
    for first, last in itertools.combinations(range(len(arrivals)), 2):
        count, span = last - first + 1, arrivals[last] - arrivals[first]
        assert count <= BURST + span * RPM / 60 + 1, f"{count} requests in {span:.2f}s: {arrivals}"
    # ... and the limit was what paced them, not a slow machine: the wait shows in the runs' events.
    span = arrivals[-1] - arrivals[0]
    assert span >= (TASKS - BURST - 1) * 60 / RPM
    waits = [e for task_events in events for e in task_events if e["type"] == "rate_limit_wait"]
    waited = sum(1 for task_events in events if any(e["type"] == "rate_limit_wait" for e in task_events))
    assert waited >= TASKS // 2, f"{waited} runs waited"
    assert all(w["payload"]["reason"] == "rate_limit" and w["payload"]["seconds"] > 0 for w in waits)
    assert all(w["payload"]["message"].startswith("waiting for rate limit, ") for w in waits)
