"""Reliability, live: crash recovery, long runs past consumer_timeout, retries, replay, durable steps,
timeouts and graceful shutdown, each on real processes over PostgreSQL and RabbitMQ.

Every deployment here is this module's own (see ``deployments``), so killing
or cutting things never disturbs the lifecycle suite's deployment.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.audit import open_stack
from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Deployment, Stack, launch
from tests.support import rabbitmq_node
from tests.support.processes import OPSCORE, REPO_ROOT
from tests.support.waiting import wait_for, wait_for_sync

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"
LEASE = 5.0
RECOVERY_BOUND = 30.0
FAST_LEASE = {"OPSCORE_LEASE_SECONDS": str(LEASE)}


def _transitions(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["payload"]["to"]) for e in events if e["type"] == "status"]


def _goal(text: str) -> str:
    # The fake counts requests per goal, so every scenario gets a goal of its own.
    return f"{text} {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def proxied(deployments: DeploymentFactory) -> Deployment:
    return deployments(workers=2, proxied=True, env=FAST_LEASE)


@pytest.fixture
async def stack(proxied: Deployment) -> Any:
    async with open_stack(proxied) as stack:
        yield stack


async def _wait_rerun(stack: Stack, task_id: str, timeout: float) -> None:
    await wait_for(
        lambda: stack.events(task_id),
        lambda events: _transitions(events).count("running") == 2,
        timeout=timeout,
        what=f"task {task_id} running again",
    )


def _process_of(deployment: Deployment, worker_id: str) -> Any:
    pid = next(w["pid"] for w in deployment.live_workers() if w["id"] == worker_id)
    return deployment.pool_of(int(pid))


# ---- 5 (and 1): durable steps across a crash ----------------------------------------------


async def test_killed_mid_step_resumes_after_the_last_finished_step(stack: Stack, proxied: Deployment) -> None:
    goal = _goal("[[tool_stall=60]] durable")
    task = await stack.submit(goal=goal, model=MODEL)
    # Step 2's model call is stalled at the fake: step 1 (model + calculator) is finished and saved.
    await wait_for(lambda: _step_calls(proxied, goal, 2), lambda n: n == 1, timeout=30, what="step 2 started")
    running = await stack.task(task["id"])
    victim = _process_of(proxied, running["worker_id"])

    victim.kill()
    proxied.start_worker()  # what a supervisor would do, so the module keeps two workers

    # Detected by the stale heartbeat and run again on a live worker within the bound.
    await _wait_rerun(stack, task["id"], RECOVERY_BOUND)
    done = await stack.wait_status(task["id"], TERMINAL, timeout=30)
    assert done["status"] == "completed", done
    events = await stack.events(task["id"])
    rerun = [e for e in events if e["type"] == "status" and e["payload"]["to"] == "running"][-1]
    assert done["attempts"] == 2
    assert [e["payload"]["error_type"] for e in events if e["type"] == "requeued"] == ["worker_lost"]
    assert rerun["payload"]["worker_id"] != running["worker_id"]
    # Step 1 was neither asked of the model nor run as a tool again.
    assert proxied.fake.calls[(goal, 1)] == 1
    assert proxied.fake.calls[(goal, 2)] == 2
    assert sum(1 for e in events if e["type"] == "tool_result") == 1
    resumed = [e for e in events if e["type"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["attempt"] == 2, resumed
    assert done["usage"]["reused_tokens"] >= 15, done["usage"]
    assert _transitions(events).count("completed") == 1


async def _step_calls(deployment: Deployment, goal: str, step: int) -> int:
    return deployment.fake.calls[(goal, step)]


# ---- 3 and 4: retries with backoff, dead letters, replay ---------------------------------------


async def test_retryable_failure_is_retried_and_each_attempt_recorded(stack: Stack) -> None:
    # agentkit's client retries a 500 four times itself; the fifth request succeeds in attempt 2.
    task = await stack.submit(goal=_goal("[[fail_first=4]] flaky"), model=MODEL)

    done = await stack.wait_status(task["id"], TERMINAL, timeout=60)

    assert done["status"] == "completed", done
    assert done["attempts"] == 2
    assert [(e["attempt"], e["type"]) for e in done["attempt_errors"]] == [(1, "model_error")]
    events = await stack.events(task["id"])
    failed = [e for e in events if e["type"] == "attempt_failed"]
    assert len(failed) == 1 and failed[0]["payload"]["retry_in_seconds"] > 0
    assert _transitions(events) == ["pending", "running", "pending", "running", "completed"]


async def test_out_of_retries_fails_with_every_error_then_replays(stack: Stack, proxied: Deployment) -> None:
    api_task = await stack.submit(goal=_goal("[[fail_first=8]] dead letter"), model=MODEL, max_retries=1)
    cli_task = await stack.submit(goal=_goal("[[fail_first=4]] dead letter cli"), model=MODEL, max_retries=0)

    dead = await stack.wait_status(api_task["id"], TERMINAL, timeout=90)
    assert dead["status"] == "failed" and dead["error"]["type"] == "model_error", dead
    assert dead["attempts"] == 2
    assert [e["attempt"] for e in dead["attempt_errors"]] == [1, 2]
    dead_cli = await stack.wait_status(cli_task["id"], TERMINAL, timeout=60)
    assert dead_cli["status"] == "failed" and dead_cli["attempts"] == 1

    response = await stack.client.post(f"/v1/tasks/{api_task['id']}/retry")
    assert response.status_code == 202 and response.json()["status"] == "pending", response.text
    cli = await asyncio.to_thread(
        subprocess.run,
        [OPSCORE, "retry", cli_task["id"]],
        env=proxied.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr

    replayed = await stack.wait_status(api_task["id"], TERMINAL, timeout=60)
    assert replayed["status"] == "completed" and replayed["attempts"] == 3, replayed
    assert len(replayed["attempt_errors"]) == 2  # the dead letter's history is kept
    replayed_cli = await stack.wait_status(cli_task["id"], TERMINAL, timeout=60)
    assert replayed_cli["status"] == "completed" and replayed_cli["attempts"] == 2, replayed_cli
    assert (await stack.client.post(f"/v1/tasks/{api_task['id']}/retry")).status_code == 409


# ---- 6: timeouts -----------------------------------------------------------------------


async def test_run_past_its_timeout_fails_as_timeout(stack: Stack) -> None:
    task = await stack.submit(goal=_goal("[[delay=60]] too slow"), model=MODEL, timeout_seconds=2, max_retries=3)

    done = await stack.wait_status(task["id"], TERMINAL, timeout=30)

    assert done["status"] == "failed" and done["error"]["type"] == "timeout", done
    assert done["attempts"] == 1


async def test_unstarted_task_fails_at_its_schedule_to_start_deadline_without_any_delivery(
    stack: Stack, proxied: Deployment
) -> None:
    assert proxied.broker is not None
    proxied.broker.cut()  # no message can reach a worker: only the recovery duty can settle the task
    try:
        task = await stack.submit(goal=_goal("never delivered"), model=MODEL, schedule_to_start_seconds=1)
        done = await stack.wait_status(task["id"], TERMINAL, timeout=30)
    finally:
        proxied.broker.restore()

    assert done["status"] == "failed" and done["error"]["type"] == "schedule_to_start_timeout", done
    assert done["attempts"] == 0


# ---- 1: a whole pool disappears ----------------------------------------------------------


async def test_a_whole_pool_killed_is_recovered_by_a_new_pool(deployments: DeploymentFactory) -> None:
    deployment = deployments(workers=0, env=FAST_LEASE)
    pool = deployment.start_worker(processes=2)
    deployment.wait_workers(2)
    async with open_stack(deployment) as stack:
        tasks = [await stack.submit(goal=_goal("[[delay=30]] pooled"), model=MODEL) for _ in range(4)]
        for task in tasks:
            await stack.wait_status(task["id"], {"running"}, timeout=30)

        pool.kill()  # the supervisor and both its processes, at once
        killed_at = time.monotonic()
        deployment.start_worker(processes=2, extra_env={"OPSCORE_WORKER_CONCURRENCY": "8"})

        for task in tasks:
            await _wait_rerun(stack, task["id"], RECOVERY_BOUND)
        assert time.monotonic() - killed_at < RECOVERY_BOUND
        for task in tasks:
            done = await stack.wait_status(task["id"], TERMINAL, timeout=60)
            assert done["status"] == "completed" and done["attempts"] == 2, done
            assert _transitions(await stack.events(task["id"])).count("completed") == 1


# ---- 9: graceful shutdown --------------------------------------------------------------------


async def test_sigterm_finishes_short_runs_and_hands_back_long_ones(deployments: DeploymentFactory) -> None:
    grace = 5.0
    deployment = deployments(workers=1, env={**FAST_LEASE, "OPSCORE_SHUTDOWN_GRACE_SECONDS": str(grace)})
    async with open_stack(deployment) as stack:
        short = await stack.submit(goal=_goal("[[delay=2]] short"), model=MODEL)
        long = await stack.submit(goal=_goal("[[delay=12]] long"), model=MODEL)
        for task in (short, long):
            await stack.wait_status(task["id"], {"running"}, timeout=30)

        started = time.monotonic()
        code = await asyncio.to_thread(deployment.workers[0].stop, grace + 20)
        assert code == 0 and time.monotonic() - started < grace + 10

        # Nothing is left running under the stopped worker.
        assert (await stack.task(short["id"]))["status"] == "completed"
        handed = await stack.task(long["id"])
        assert handed["status"] == "pending" and handed["attempts"] == 0, handed
        reasons = [e["payload"].get("reason") for e in await stack.events(long["id"]) if e["type"] == "status"]
        assert "worker shutdown" in reasons

        deployment.start_worker()
        done = await stack.wait_status(long["id"], TERMINAL, timeout=60)
        assert done["status"] == "completed" and done["attempts"] == 1, done


# ---- 2: a run longer than RabbitMQ's consumer_timeout ------------------------------------------

CONSUMER_TIMEOUT_MS = 5000
# What RabbitMQ logs when it closes a channel for holding a delivery past consumer_timeout.
ACK_TIMEOUT_LOG = "waiting for delivery acknowledgement"


@pytest.fixture(scope="module")
def strict_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rabbitmq_node.PrivateNode]:
    if not rabbitmq_node.available():
        pytest.skip("rabbitmq-server is not installed here: no private node for a consumer_timeout test")
    # consumer_timeout is checked on the channel tick (60 s by default); tick each second to see it act.
    advanced = f"[{{rabbit, [{{consumer_timeout, {CONSUMER_TIMEOUT_MS}}}, {{channel_tick_interval, 1000}}]}}]."
    with rabbitmq_node.private_rabbitmq(tmp_path_factory.mktemp("rabbit"), advanced=advanced) as node:
        yield node


def _held_delivery_is_cut_off(amqp_url: str) -> bool:
    """Control: on this node, a consumer that holds a delivery unacked past the timeout loses its channel."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.queue_declare("control", auto_delete=True)
        channel.basic_publish("", "control", b"hold me")
        channel.basic_consume("control", lambda *args: None, auto_ack=False)
        deadline = time.monotonic() + CONSUMER_TIMEOUT_MS / 1000 + 20
        while channel.is_open and time.monotonic() < deadline:
            connection.process_data_events(time_limit=1)
        return not channel.is_open
    finally:
        if connection.is_open:
            connection.close()


def _unacked(node: rabbitmq_node.PrivateNode, queue_name: str) -> int | None:
    rows = [line.split() for line in node.ctl("list_queues", "-q", "name", "messages_unacknowledged").splitlines()]
    return next((int(row[1]) for row in rows if len(row) == 2 and row[0] == queue_name), None)


async def test_a_run_longer_than_consumer_timeout_completes_once(
    strict_broker: rabbitmq_node.PrivateNode, pg_admin_url: str, tmp_path: Path
) -> None:
    assert await asyncio.to_thread(_held_delivery_is_cut_off, strict_broker.amqp_url)
    # The control's held delivery is in the node's log; the long run below must add no such line.
    timeouts_before = wait_for_sync(
        lambda: strict_broker.log_text().count(ACK_TIMEOUT_LOG),
        lambda count: count >= 1,
        timeout=15,
        what="the node to log the control's acknowledgement timeout",
    )
    assert timeouts_before == 1
    run_seconds = 3 * CONSUMER_TIMEOUT_MS / 1000
    with launch(pg_admin_url, strict_broker.amqp_url, tmp_path, workers=1) as deployment:
        async with open_stack(deployment) as stack:
            task = await stack.submit(goal=_goal(f"[[delay={run_seconds:g}]] hours, in short"), model=MODEL)
            await stack.wait_status(task["id"], {"running"}, timeout=30)
            # Acked at dispatch: nothing stays unacknowledged while the run goes on. (Each rabbitmqctl
            # call takes seconds here, so this only samples; the broker's log below is the proof.)
            await wait_for(
                lambda: asyncio.to_thread(_unacked, strict_broker, deployment.queue_name),
                lambda unacked: unacked == 0,
                timeout=CONSUMER_TIMEOUT_MS / 1000,
                what="the delivery to be acked",
            )
            acked_by = datetime.now(UTC)

            done = await stack.wait_status(task["id"], TERMINAL, timeout=run_seconds + 30)

            assert done["status"] == "completed", done
            # Acked while the run still went on (the rabbitmqctl samples can take seconds each under
            # load, so this compares with the finish time instead of asking for the status again).
            assert datetime.fromisoformat(done["finished_at"]) > acked_by, (done["finished_at"], acked_by)
            # One attempt: its worker, the only one, never presumed itself dead (its heartbeat has a thread
            # of its own, and a worker never requeues its own runs).
            assert done["attempts"] == 1
            assert _transitions(await stack.events(task["id"])) == ["pending", "running", "completed"]
            assert deployment.fake.calls[(task["goal"], 1)] == 1
    assert strict_broker.log_text().count(ACK_TIMEOUT_LOG) == timeouts_before
