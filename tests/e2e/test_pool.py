"""``opscore worker --processes N``: one supervisor, N worker processes that share the work."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Stack
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

    async with httpx.AsyncClient(base_url=deployment.api_url, timeout=30) as client:
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
