"""A whole worker process in this one (Dramatiq worker, middleware, runner) on SQLite and the in-process broker.

What ``opscore dev`` does: a graceful stop hands back what did not finish, with
one INFO line per run and no error; a restart runs what it handed back at
once, though the in-process queue that held its message died with the
first process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from uuid import UUID

import pytest

from ops_core.config import Settings
from ops_core.db.ratelimits import RateLimitStore
from ops_core.lifecycle import TaskStatus
from ops_core.queue.broker import setup_broker
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT
from ops_core.worker.process import WorkerProcess
from tests.support import agents
from tests.support.waiting import wait_for_sync

RESTART_BOUND = 20.0  # far below republish_after_seconds (300), which is what a restart used to wait


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return Settings(
        database_url=sqlite_url,
        broker_url="memory://",
        agents="tests.support.agents",
        shutdown_grace_seconds=0.5,
        relay_interval_seconds=0.2,
        heartbeat_seconds=0.5,
    )


@pytest.fixture
def nap() -> Iterator[None]:
    saved = agents.SLEEP_SECONDS["value"]
    yield
    agents.SLEEP_SECONDS["value"] = saved


def _submit(settings: Settings, broker: object, goal: str) -> UUID:
    async def submit() -> UUID:
        runtime = Runtime.open(settings, broker=broker)  # type: ignore[arg-type]
        try:
            task, _ = await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal=goal, agent="sleepy")
            return task.id
        finally:
            await runtime.close()

    return asyncio.run(submit())


def _status(settings: Settings, task_id: UUID) -> tuple[TaskStatus, int]:
    async def read() -> tuple[TaskStatus, int]:
        runtime = Runtime.open(settings)
        try:
            task = await runtime.store.get(task_id, tenant=EVERY_TENANT)
            return task.status, task.attempts
        finally:
            await runtime.close()

    return asyncio.run(read())


def test_a_graceful_stop_hands_back_quietly_and_a_restart_runs_it_at_once(
    settings: Settings, nap: None, caplog: pytest.LogCaptureFixture
) -> None:
    agents.SLEEP_SECONDS["value"] = 60.0
    broker = setup_broker(settings)
    # Two run slots, three tasks: the third message waits in a dispatch thread for a slot, and is
    # refused when the stop frees one.
    worker = WorkerProcess(settings, threads=2, concurrency=2, broker=broker, supervised=False)
    worker.start()
    try:
        ids = [_submit(settings, broker, f"{agents.ARITHMETIC_GOAL} ({i})") for i in range(3)]
        for task_id in ids[:2]:
            wait_for_sync(
                lambda task_id=task_id: _status(settings, task_id),  # type: ignore[misc]
                lambda found: found[0] is TaskStatus.RUNNING,
                timeout=20,
                what=f"task {task_id} running",
            )
    finally:
        with caplog.at_level(logging.INFO):
            worker.stop()

    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    handed = [r for r in caplog.records if "handed back" in r.getMessage()]
    assert len(handed) == 2 and all(r.levelno == logging.INFO for r in handed)
    assert {getattr(r, "task_id", None) for r in handed} == {str(i) for i in ids[:2]}
    assert all(_status(settings, i) == (TaskStatus.PENDING, 0) for i in ids)

    # "Restart": a new process has a new, empty in-process queue; the old messages are gone.
    agents.SLEEP_SECONDS["value"] = 0.0
    again = WorkerProcess(settings, threads=2, concurrency=4, broker=setup_broker(settings), supervised=False)
    again.start()
    try:
        for task_id in ids:
            wait_for_sync(
                lambda task_id=task_id: _status(settings, task_id),  # type: ignore[misc]
                lambda found: found[0] is TaskStatus.COMPLETED,
                timeout=RESTART_BOUND,
                what=f"task {task_id} completed after the restart",
            )
    finally:
        again.stop()
    assert all(_status(settings, i) == (TaskStatus.COMPLETED, 1) for i in ids)


def test_a_message_waiting_at_start_up_is_run_by_the_first_dispatch(
    settings: Settings, nap: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The runner is up before Dramatiq consumes (the middleware's before_worker_boot), so a message
    already queued is claimed by its first delivery: never refused, never retried."""
    agents.SLEEP_SECONDS["value"] = 0.0
    broker = setup_broker(settings)
    task_id = _submit(settings, broker, agents.ARITHMETIC_GOAL)  # queued before any worker exists
    worker = WorkerProcess(settings, threads=2, concurrency=2, broker=broker, supervised=False)
    with caplog.at_level(logging.INFO):
        worker.start()
        try:
            wait_for_sync(
                lambda: _status(settings, task_id),
                lambda found: found[0] is TaskStatus.COMPLETED,
                timeout=20,
                what=f"task {task_id} completed",
            )
        finally:
            worker.stop()
    assert _status(settings, task_id) == (TaskStatus.COMPLETED, 1)
    assert not [r for r in caplog.records if "Retrying message" in r.getMessage() or r.levelno >= logging.ERROR]


def test_rate_limits_hold_in_the_embedded_setup_and_the_waits_are_events(settings: Settings, nap: None) -> None:
    """``opscore dev`` with OPSCORE_RATE_LIMITS: the limiter keeps its state in SQLite, and runs show their waits."""
    agents.SLEEP_SECONDS["value"] = 0.0
    limited = settings.model_copy(update={"rate_limits": "offline rpm=600 burst=1"})  # one call per 100 ms
    broker = setup_broker(limited)
    worker = WorkerProcess(limited, threads=2, concurrency=4, broker=broker, supervised=False)
    worker.start()
    try:
        ids = [_submit(limited, broker, f"{agents.ARITHMETIC_GOAL} ({i})") for i in range(4)]
        for task_id in ids:
            wait_for_sync(
                lambda task_id=task_id: _status(limited, task_id),  # type: ignore[misc]
                lambda found: found[0] is TaskStatus.COMPLETED,
                timeout=20,
                what=f"task {task_id} completed",
            )
    finally:
        worker.stop()

    async def read() -> tuple[list[str], float | None]:
        runtime = Runtime.open(limited)
        try:
            types = [e.type for i in ids for e in await runtime.store.list_events(i, tenant=EVERY_TENANT)]
            state = await RateLimitStore(runtime.engine).state("offline")
            return types, None if state is None else state.request_tat
        finally:
            await runtime.close()

    types, request_tat = asyncio.run(read())
    assert types.count("model_request") == 8  # two model calls per task
    assert "rate_limit_wait" in types
    assert request_tat is not None and request_tat > 0
