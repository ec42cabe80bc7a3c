"""``opscore worker --processes 2`` with OPSCORE_WORKER_METRICS_PORT: one endpoint, the sum of both processes."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Stack
from tests.support.processes import free_port
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"
TASKS = 24
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _in_flight_pids(samples: Samples) -> set[int]:
    return {int(dict(labels)["pid"]) for name, labels in samples if name == "opscore_runs_in_flight"}


async def test_a_pool_of_two_serves_the_sum_of_its_processes_and_counts_the_one_it_lost(
    deployments: DeploymentFactory,
) -> None:
    deployment = deployments(workers=0)
    port = free_port()
    pool = deployment.start_worker(processes=2, extra_env={"OPSCORE_WORKER_METRICS_PORT": str(port)})
    deployment.wait_workers(2)
    children = {int(str(w["pid"])) for w in deployment.live_workers()}

    async with deployment.client() as client:
        stack = Stack(deployment, client)
        # Each run asks the model (which waits a little, so both processes get work), calls the
        # calculator, and asks again.
        submitted = await asyncio.gather(
            *(stack.submit(goal=f"[[delay=0.2]] [[tool_stall=0]] metrics {i}", model=MODEL) for i in range(TASKS))
        )
        done = [await stack.wait_status(t["id"], TERMINAL) for t in submitted]
    assert {t["status"] for t in done} == {"completed"}
    ran_in = {int(t["worker_id"].rsplit("-", 2)[-2]) for t in done}
    assert ran_in == children, "both processes ran tasks, so the endpoint's counts come from both"

    # A run's end is counted just after its status is written: wait for the last ones.
    finished = ("opscore_runs_finished_total", (("agent", "default"), ("status", "completed")))
    samples = wait_for_sync(
        lambda: _scrape(port),
        lambda s: s.get(finished) == TASKS,
        timeout=30,
        what=f"{TASKS} finished runs on the pool's endpoint",
    )
    model = {"provider": "openai", "model": "fake-model"}
    assert _get(samples, "opscore_runs_started_total", agent="default") == TASKS
    assert _get(samples, "opscore_run_duration_seconds_count", agent="default", status="completed") == TASKS
    assert _get(samples, "opscore_queue_lag_seconds_count", agent="default") == TASKS
    assert _get(samples, "opscore_model_calls_total", **model) == 2 * TASKS
    assert _get(samples, "opscore_model_call_duration_seconds_count", **model) == 2 * TASKS
    assert _get(samples, "opscore_model_input_tokens_total", **model) == sum(t["usage"]["input_tokens"] for t in done)
    assert _get(samples, "opscore_model_output_tokens_total", **model) == sum(t["usage"]["output_tokens"] for t in done)
    assert _get(samples, "opscore_tool_calls_total", tool="calculator") == TASKS
    assert _get(samples, "opscore_tool_call_duration_seconds_count", tool="calculator") == TASKS
    assert _in_flight_pids(samples) == children
    assert all(v == 0 for (name, _), v in samples.items() if name == "opscore_runs_in_flight")

    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    after = wait_for_sync(
        lambda: _scrape(port),
        lambda s: (
            _get(s, "opscore_worker_processes_lost_total", reason="signal") == 1
            and len(_in_flight_pids(s) - children) == 1
        ),
        timeout=30,
        what=f"the loss of worker process {victim} and its replacement on the endpoint\n{deployment.logs()}",
    )
    assert victim not in _in_flight_pids(after), "a dead process's gauge is dropped"
    assert after.get(finished) == TASKS, "its counts stay in the sum"

    assert pool.stop(timeout=30) == 0
