"""Fault injection with at least 200 tasks in flight: a worker SIGKILLed, RabbitMQ cut, PostgreSQL cut.

Each scenario ends only when every task is terminal, then checks the counts
straight from PostgreSQL and RabbitMQ: none lost, none completed twice
(exactly one status→completed event per task), none stuck, the queue empty.
The deployment reaches both services through proxies this module controls;
the shared services themselves are never touched.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.audit import (
    Audit,
    audit,
    open_stack,
    registered_worker_id,
    requeued_from,
    submit_many,
    wait_all_terminal,
    wait_queue_drained,
    wait_running,
)
from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import Deployment, Stack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"
IN_FLIGHT = 200
LEASE = 5.0
DB_TIMEOUT = 5.0  # the default OPSCORE_DB_TIMEOUT_SECONDS: the bound on every answer during an outage
ENV = {
    "OPSCORE_WORKER_CONCURRENCY": "50",
    "OPSCORE_LEASE_SECONDS": str(LEASE),
}
SETTLE_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def faulty(deployments: DeploymentFactory) -> Deployment:
    return deployments(workers=2, proxied=True, env=ENV)


@pytest.fixture
async def stack(faulty: Deployment) -> AsyncIterator[Stack]:
    async with open_stack(faulty) as stack:
        yield stack
    # Leave the deployment whole for the next scenario, whatever happened.
    assert faulty.database is not None and faulty.broker is not None
    faulty.database.restore()
    faulty.broker.restore()
    alive = sum(1 for w in faulty.workers if w.alive())
    for _ in range(2 - alive):
        faulty.start_worker()


def assert_exactly_once(final: Audit, count: int) -> None:
    assert final.statuses == Counter({"completed": count}), final  # none lost, failed or stuck
    assert final.completions == Counter({1: count}), final  # none completed twice
    assert final.running_without_worker == 0


async def test_worker_sigkilled_mid_run(stack: Stack, faulty: Deployment) -> None:
    ids = await submit_many(stack, IN_FLIGHT, "[[delay=1.5]] kill {i}", model=MODEL)
    await wait_running(faulty, ids, 40)
    victim = next(w for w in faulty.workers if w.alive())
    # From its registration, not /v1/workers: with 200 runs just claimed, a heartbeat may be a few
    # seconds late, which drops a worker from that list (3 missed beats) but not from its lease.
    victim_id = await registered_worker_id(faulty, victim)

    victim.kill()
    faulty.start_worker()  # as a supervisor would

    final = await wait_all_terminal(faulty, ids, timeout=SETTLE_TIMEOUT)
    assert_exactly_once(final, IN_FLIGHT)
    # The victim's runs were detected by its stale heartbeat and counted as a lost attempt.
    requeued = await requeued_from(faulty, ids, victim_id)
    assert requeued > 0 and final.attempts[2] >= requeued, (requeued, final)
    await wait_queue_drained(faulty)


async def test_rabbitmq_cut_mid_run_then_restored(stack: Stack, faulty: Deployment) -> None:
    assert faulty.broker is not None
    ids = await submit_many(stack, IN_FLIGHT, "[[delay=1.5]] broker {i}", model=MODEL)
    await wait_running(faulty, ids, 40)

    faulty.broker.cut()
    try:
        # Accepted and stored while the broker is away, and fast: the publisher's circuit is open.
        started = time.monotonic()
        during = await submit_many(stack, 50, "[[delay=0.5]] during broker outage {i}", model=MODEL)
        assert time.monotonic() - started < 10
        ready = await stack.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] != "ok", ready.text
        # Runs already claimed keep going and finish: the database is still there.
        await wait_for(
            lambda: audit(faulty.direct_database_url, ids),
            lambda a: a.statuses["completed"] >= 60,
            timeout=60,
            what="runs finishing while the broker is cut",
        )
    finally:
        faulty.broker.restore()

    final = await wait_all_terminal(faulty, ids + during, timeout=SETTLE_TIMEOUT)
    assert_exactly_once(final, len(ids) + len(during))
    assert (await stack.client.get("/readyz")).status_code == 200
    await wait_queue_drained(faulty)


# Its own deadlines (running 40 s, the outage 1.5 leases, settling SETTLE_TIMEOUT) add up past the suite's
# 120 s per test: the per-test limit must not be what ends it on a busy machine.
@pytest.mark.timeout(300)
async def test_postgresql_cut_mid_run_then_restored(stack: Stack, faulty: Deployment) -> None:
    assert faulty.database is not None
    ids = await submit_many(stack, IN_FLIGHT, "[[delay=1.5]] database {i}", model=MODEL)
    await wait_running(faulty, ids, 40)

    faulty.database.cut()
    try:
        # Every API answer during the outage is a prompt 503, never a 500 or a hang, for longer
        # than a lease, so each worker's heartbeat goes stale.
        await _answers_503_for(stack, seconds=LEASE * 1.5, bound=DB_TIMEOUT + 3)
    finally:
        faulty.database.restore()

    final = await wait_all_terminal(faulty, ids, timeout=SETTLE_TIMEOUT)
    assert_exactly_once(final, IN_FLIGHT)
    # Workers that lived through the outage kept their runs: none was reaped as an orphan.
    assert final.attempts == Counter({1: IN_FLIGHT}), final
    await wait_queue_drained(faulty)


async def _answers_503_for(stack: Stack, *, seconds: float, bound: float) -> None:
    held_until = time.monotonic() + seconds
    probes = 0
    while time.monotonic() < held_until:
        for request in (
            stack.client.build_request("POST", "/v1/tasks", json={"goal": "during a database outage"}),
            stack.client.build_request("GET", "/v1/tasks", params={"limit": 5}),
            stack.client.build_request("GET", "/readyz"),
        ):
            started = time.monotonic()
            try:
                response = await stack.client.send(request)
            except httpx.TransportError as exc:
                raise AssertionError(f"the API did not answer during the outage: {exc!r}") from exc
            assert response.status_code == 503, (request.url, response.status_code, response.text)
            assert time.monotonic() - started < bound, request.url
            probes += 1
        await asyncio.sleep(0.2)
    assert probes >= 3
