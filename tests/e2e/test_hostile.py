"""Runs that misbehave on purpose: nothing a task does may stop a worker's heartbeat or hold up its other
runs for long, and a run that holds the event loop is ended by the loop watchdog."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import psutil
import pytest

from tests.e2e.audit import heartbeat_age, open_stack
from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Deployment, Stack
from tests.support import agents
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"
LEASE = 3.0
NORMAL_RUN_SECONDS = 2.0  # a 0.5 s model call plus the run's own writes, with room for a busy machine
ENV = {
    "OPSCORE_AGENTS": "tests.support.agents",
    "PYTHONPATH": str(REPO_ROOT),
    "OPSCORE_LEASE_SECONDS": str(LEASE),
}


class HeartbeatWatch:
    """Samples a worker's heartbeat age while something runs; ``oldest`` is the worst it got."""

    def __init__(self, deployment: Deployment, worker_id: str) -> None:
        self._deployment = deployment
        self._worker_id = worker_id
        self.oldest = 0.0
        self.samples = 0
        self.trace: list[float] = []

    async def sample_while(self, going: asyncio.Future[object] | asyncio.Task[object]) -> None:
        while not going.done():
            age = await heartbeat_age(self._deployment, self._worker_id)
            self.trace.append(round(age, 1))
            self.oldest = max(self.oldest, age)
            self.samples += 1
            await asyncio.sleep(0.1)


async def _one_worker(deployments: DeploymentFactory) -> tuple[Deployment, dict[str, object]]:
    deployment = deployments(workers=0, env=ENV)
    deployment.start_worker(processes=1)
    deployment.wait_workers(1)
    [worker] = deployment.live_workers()
    return deployment, worker


async def _warm_up(stack: Stack) -> None:
    """The process's first run of a provider's model imports its SDK: not what the tests time."""
    warm = await stack.submit(goal="[[delay=0.5]] warm-up", model=MODEL)
    assert (await stack.wait_status(warm["id"], TERMINAL, timeout=30))["status"] == "completed"


async def _tool_started(stack: Stack, task_id: str) -> None:
    await wait_for(
        lambda: stack.events(task_id),
        lambda events: any(e["type"] == "tool_call" for e in events),
        timeout=30,
        what=f"task {task_id}'s tool to start",
    )


async def test_a_cpu_hogging_tool_holds_up_neither_the_other_runs_nor_the_heartbeat(
    deployments: DeploymentFactory,
) -> None:
    deployment, worker = await _one_worker(deployments)
    async with open_stack(deployment) as stack:
        await _warm_up(stack)

        hog = await stack.submit(goal=agents.ARITHMETIC_GOAL, agent="hog")
        await _tool_started(stack, hog["id"])
        hogging_since = time.monotonic()
        watch = HeartbeatWatch(deployment, str(worker["id"]))

        async def others() -> list[dict[str, Any]]:
            goals = [f"[[delay=0.5]] beside the hog {i}" for i in range(8)]
            tasks = await asyncio.gather(*(stack.submit(goal=goal, model=MODEL) for goal in goals))
            return [await stack.wait_status(t["id"], TERMINAL, timeout=30) for t in tasks]

        beside = asyncio.ensure_future(others())
        await watch.sample_while(beside)
        finished_within = time.monotonic() - hogging_since
        done = beside.result()

        assert all(t["status"] == "completed" and t["attempts"] == 1 for t in done), done
        # Each ran in about its model's 0.5 s, and all were done while the hog still held the CPU.
        assert max(_run_seconds(t) for t in done) < NORMAL_RUN_SECONDS, [_run_seconds(t) for t in done]
        assert finished_within < agents.HOG_SECONDS
        assert (await stack.task(hog["id"]))["status"] == "running"
        assert watch.samples > 3 and watch.oldest < LEASE, watch.oldest
        final = await stack.wait_status(hog["id"], TERMINAL, timeout=60)
        assert final["status"] == "completed" and final["attempts"] == 1, final


def _run_seconds(task: dict[str, Any]) -> float:
    started = datetime.fromisoformat(task["started_at"])
    return (datetime.fromisoformat(task["finished_at"]) - started).total_seconds()


async def test_a_run_that_holds_the_event_loop_is_ended_by_the_watchdog_and_fails_as_worker_lost(
    deployments: DeploymentFactory,
) -> None:
    deployment, worker = await _one_worker(deployments)
    worker_pid = int(str(worker["pid"]))
    async with open_stack(deployment) as stack:
        hog = await stack.submit(goal=agents.ARITHMETIC_GOAL, agent="loop_hog", max_retries=0)
        await stack.wait_status(hog["id"], {"running"}, timeout=30)

        # The offline model calls the tool at once, and the loop is held from then on (so not even the
        # tool_call event gets written). The heartbeat, on a thread of its own, keeps beating until the
        # watchdog ends the process (well before the hog would stop by itself).
        watch = HeartbeatWatch(deployment, str(worker["id"]))
        process_ended = asyncio.ensure_future(
            wait_for(
                lambda: asyncio.to_thread(psutil.pid_exists, worker_pid),
                lambda alive: not alive,
                timeout=agents.LOOP_HOG_SECONDS / 2,
                what=f"the watchdog to end worker process {worker_pid}\n{deployment.logs()}",
            )
        )
        await watch.sample_while(process_ended)
        process_ended.result()
        assert watch.samples > 3 and watch.oldest < LEASE, watch.oldest
        assert "event loop has not turned" in deployment.logs()

        # The supervisor restarts the process; the reaper ends the task, out of retries.
        dead = await stack.wait_status(hog["id"], TERMINAL, timeout=60)
        assert dead["status"] == "failed" and dead["error"]["type"] == "worker_lost", dead
        assert dead["attempts"] == 1
        after = await stack.submit(goal="after the loop hog")
        assert (await stack.wait_status(after["id"], TERMINAL, timeout=60))["status"] == "completed"


async def test_the_forty_thousand_character_goal_holds_up_neither_the_other_runs_nor_the_heartbeat(
    deployments: DeploymentFactory,
) -> None:
    # The finding: 40,000 characters of "1 1 1 …" in a goal or an input froze a worker for 68 s in the
    # offline model's parser (on the loop, holding the GIL), then the next worker it was requeued to. A goal
    # is now refused past 20,000 characters (422), so the goal here is the longest accepted one.
    deployment, worker = await _one_worker(deployments)
    async with open_stack(deployment) as stack:
        await _warm_up(stack)
        watch = HeartbeatWatch(deployment, str(worker["id"]))

        async def all_of_them() -> list[dict[str, Any]]:
            hostile = [
                stack.submit(goal="1 " * 10_000, model="offline:default"),
                stack.submit(goal="hello", input={"x": "1 " * 20_000}, model="offline:default"),
            ]
            others = [stack.submit(goal=f"[[delay=0.5]] beside it {i}", model=MODEL) for i in range(8)]
            tasks = await asyncio.gather(*hostile, *others)
            return [await stack.wait_status(t["id"], TERMINAL, timeout=30) for t in tasks]

        going = asyncio.ensure_future(all_of_them())
        await watch.sample_while(going)
        hostile_done, others_done = going.result()[:2], going.result()[2:]

    assert all(t["status"] == "completed" and t["attempts"] == 1 for t in going.result()), going.result()
    assert max(_run_seconds(t) for t in others_done) < NORMAL_RUN_SECONDS, [_run_seconds(t) for t in others_done]
    assert max(_run_seconds(t) for t in hostile_done) < NORMAL_RUN_SECONDS, [_run_seconds(t) for t in hostile_done]
    assert watch.samples > 3 and watch.oldest < LEASE, watch.oldest
