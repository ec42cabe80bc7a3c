"""``opscore worker --processes N``: one supervisor, N worker processes that share the work."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.e2e.audit import open_stack
from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Stack
from tests.support import agents
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _pids(deployment_workers: list[dict[str, object]]) -> set[int]:
    return {int(str(w["pid"])) for w in deployment_workers}


async def test_a_pool_runs_n_processes_restarts_a_dead_one_and_stops_on_sigterm(deployments: DeploymentFactory) -> None:
    deployment = deployments(workers=0)
    pool = deployment.start_worker(processes=2)
    deployment.wait_workers(2)
    children = _pids(deployment.live_workers())
    assert len(children) == 2 and pool.pid not in children

    async with deployment.client() as client:
        stack = Stack(deployment, client)
        tasks = await asyncio.gather(*(stack.submit(goal=f"pool task {i}") for i in range(40)))
        done = [await stack.wait_status(t["id"], TERMINAL) for t in tasks]
        assert {t["status"] for t in done} == {"completed"}

        victim = min(children)
        os.kill(victim, signal.SIGKILL)
        # The supervisor notices the exit and starts a replacement process with a new pid.
        wait_for_sync(
            lambda: _pids(deployment.live_workers()),
            lambda pids: len(pids - children) >= 1,
            timeout=30,
            what=f"a replacement for worker process {victim}\n{deployment.logs()}",
        )
        after = await stack.submit(goal="after the restart")
        assert (await stack.wait_status(after["id"], TERMINAL))["status"] == "completed"

    assert pool.stop(timeout=30) == 0
    # Every child deregistered on its way out: no live worker is left behind.
    wait_for_sync(deployment.live_workers, lambda live: live == [], timeout=10, what="workers deregistered")


# ---- every pool is supervised, also with one process ---------------------------------------------

LEASE = 3.0
MISBEHAVING = {
    "OPSCORE_AGENTS": "tests.support.agents",
    "PYTHONPATH": str(REPO_ROOT),
    "OPSCORE_LEASE_SECONDS": str(LEASE),
}


async def test_a_single_process_pool_survives_the_death_of_its_worker_process(deployments: DeploymentFactory) -> None:
    deployment = deployments(workers=0, env={"OPSCORE_LEASE_SECONDS": str(LEASE)})
    pool = deployment.start_worker(processes=1)
    deployment.wait_workers(1)
    [child] = _pids(deployment.live_workers())
    assert child != pool.pid  # the worker runs in a child, never in the supervisor

    os.kill(child, signal.SIGKILL)

    wait_for_sync(
        lambda: _pids(deployment.live_workers()),
        lambda pids: bool(pids - {child}),
        timeout=30,
        what=f"a replacement for worker process {child}\n{deployment.logs()}",
    )
    assert pool.alive()
    async with open_stack(deployment) as stack:
        after = await stack.submit(goal="after the restart")
        assert (await stack.wait_status(after["id"], TERMINAL))["status"] == "completed"
    assert pool.stop(timeout=30) == 0


async def test_a_task_that_kills_its_worker_every_time_fails_as_worker_lost_while_others_complete(
    deployments: DeploymentFactory,
) -> None:
    deployment = deployments(workers=0, env=MISBEHAVING)
    pool = deployment.start_worker(processes=1)
    deployment.wait_workers(1)
    async with open_stack(deployment) as stack:
        poison = await stack.submit(goal=agents.ARITHMETIC_GOAL, agent="poison", max_retries=1)
        others = await asyncio.gather(*(stack.submit(goal=f"beside the poison {i}") for i in range(10)))

        # Each attempt ends its process; the supervisor restarts it and the reaper requeues the attempt.
        dead = await stack.wait_status(poison["id"], TERMINAL, timeout=120)
        assert dead["status"] == "failed" and dead["error"]["type"] == "worker_lost", dead
        assert dead["attempts"] == 2
        assert [e["type"] for e in dead["attempt_errors"]] == ["worker_lost", "worker_lost"]
        for task in others:
            done = await stack.wait_status(task["id"], TERMINAL, timeout=60)
            assert done["status"] == "completed", done
        # And the pool keeps taking new work.
        after = await stack.submit(goal="after the poison")
        assert (await stack.wait_status(after["id"], TERMINAL, timeout=60))["status"] == "completed"
    assert pool.alive()
