"""The runner's recovery duty against a real store: what it settles, and when it holds back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from agentkit.registry import default_registry
from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import TASKS, WORKERS, Task
from ops_core.db.store import TaskStore
from ops_core.domain import ErrorType
from ops_core.lease import ReapGuard
from ops_core.lifecycle import TaskStatus
from ops_core.runner import TaskRunner, _Run
from ops_core.services.execute import Execution, ExecutionContext
from ops_core.services.models import ModelCache
from tests.ops_core.db.helpers import make_task, running_task

LEASE = 10.0


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[uuid.UUID] = []

    async def publish(self, task_id: uuid.UUID, *, priority: int = 0, delay_seconds: float = 0.0) -> None:
        self.published.append(task_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TaskStore]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url))
    async with engine.begin() as conn:
        await conn.execute(TASKS.delete().where(TASKS.c.agent == "recovery-test"))
    try:
        yield open_store(engine)
    finally:
        await engine.dispose()


def _runner(store: TaskStore, clock: Clock) -> tuple[TaskRunner, RecordingPublisher]:
    async def republish(task: Task, delay: float) -> None:
        return None

    settings = Settings(lease_seconds=LEASE)
    ctx = ExecutionContext(store, default_registry(), ModelCache(), settings, republish)
    publisher = RecordingPublisher()
    guard = ReapGuard(LEASE, clock=clock)
    runner = TaskRunner(ctx, publisher, concurrency=1, worker_id="me", reap_guard=guard)  # type: ignore[arg-type]
    return runner, publisher


async def _age(store: TaskStore, worker: str, task_id: uuid.UUID, seconds: float) -> None:
    """Make the worker's heartbeat and the task's claim ``seconds`` old."""
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    async with store.engine.begin() as conn:
        await conn.execute(update(WORKERS).where(WORKERS.c.id == worker).values(last_heartbeat=then))
        await conn.execute(update(TASKS).where(TASKS.c.id == task_id).values(claimed_at=then))


async def _orphan(store: TaskStore, seconds: float, **overrides: Any) -> uuid.UUID:
    worker = f"dead-{uuid.uuid4().hex[:6]}"
    await store.register_worker(worker, "h", 1, 1)
    claim = await running_task(store, worker=worker, agent="recovery-test", **overrides)
    await _age(store, worker, claim.task.id, seconds)
    return claim.task.id


async def test_orphans_wait_until_this_worker_has_been_healthy_for_a_lease(store: TaskStore) -> None:
    clock = Clock()
    runner, publisher = _runner(store, clock)
    orphan = await _orphan(store, LEASE * 3)

    await runner._heartbeat()
    await runner._recover()  # just back from an outage (or just started): hold back
    assert (await store.get(orphan)).status is TaskStatus.RUNNING

    clock.now += LEASE
    await runner._recover()
    requeued = await store.get(orphan)
    assert requeued.status is TaskStatus.PENDING and requeued.attempts == 1
    # The relay published it in the same round, once. (The database is shared with other tests, whose
    # tasks the relay may republish too once they are older than republish_after_seconds.)
    assert publisher.published.count(orphan) == 1


async def test_a_run_far_past_its_timeout_under_a_dead_worker_ends_timeout(store: TaskStore) -> None:
    clock = Clock()
    runner, _ = _runner(store, clock)
    expired = await _orphan(store, 60 + LEASE * 2, timeout_seconds=60)
    await runner._heartbeat()
    clock.now += LEASE

    await runner._recover()

    task = await store.get(expired)
    assert task.status is TaskStatus.FAILED and task.error_type == ErrorType.TIMEOUT  # not another attempt


async def test_a_task_never_delivered_fails_at_its_schedule_to_start_deadline(store: TaskStore) -> None:
    runner, publisher = _runner(store, Clock())
    late = await make_task(store, agent="recovery-test", schedule_to_start_seconds=0)
    timely = await make_task(store, agent="recovery-test", schedule_to_start_seconds=3600)

    await runner._recover()  # even before this worker may reap: a deadline is not a guess about liveness

    failed = await store.get(late.id)
    assert failed.status is TaskStatus.FAILED and failed.error_type == ErrorType.SCHEDULE_TO_START_TIMEOUT
    assert [e.payload["to"] for e in await store.list_events(late.id) if e.type == "status"][-1] == "failed"
    assert (await store.get(timely.id)).status is TaskStatus.PENDING
    assert timely.id in publisher.published and late.id not in publisher.published


async def test_a_failed_heartbeat_stops_reaping(store: TaskStore) -> None:
    clock = Clock()
    runner, _ = _runner(store, clock)
    await runner._heartbeat()
    clock.now += LEASE
    await store.engine.dispose()
    runner._store = _Broken()  # type: ignore[assignment]
    with pytest.raises(ConnectionError):
        await runner._heartbeat()
    clock.now += LEASE
    assert not runner._reap_guard.may_reap()


class _Broken:
    async def heartbeat(self, worker_id: str) -> None:
        raise ConnectionError("database unreachable")


async def test_the_periodic_flush_writes_the_waiting_events_of_every_run(store: TaskStore) -> None:
    runner, _ = _runner(store, Clock())
    claims = [await running_task(store, worker="me", agent="recovery-test") for _ in range(3)]
    for claim in claims:
        runner._runs[claim.task.id] = _Run(Execution(runner._ctx, claim, asyncio.Event()))
    runner._runs[claims[0].task.id].execution.recorder.add("model_call", {"n": 0})
    runner._runs[claims[2].task.id].execution.recorder.add("model_call", {"n": 2})

    await runner._flush_events()

    types = [[e.type for e in await store.list_events(c.task.id)] for c in claims]
    assert types == [["status", "status", "model_call"], ["status", "status"], ["status", "status", "model_call"]]
    assert not any(run.execution.recorder.pending for run in runner._runs.values())
