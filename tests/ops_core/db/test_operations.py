"""Operator actions (cancel, retry), the worker registry and crash recovery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.postgres import PostgresStore
from ops_core.db.store import TaskStore
from ops_core.domain import ErrorType
from ops_core.errors import Conflict, DatabaseUnavailable, TaskFinished, TaskNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import USAGE, make_task, running_task, unknown_id


async def test_cancel_pending_is_immediate(store: TaskStore) -> None:
    task = await make_task(store)
    cancelled = await store.request_cancel(task.id, tenant=EVERY_TENANT)
    assert cancelled.status is TaskStatus.CANCELLED and cancelled.finished_at is not None
    assert await store.claim(task.id, "w1") is None
    assert (await store.list_events(task.id, tenant=EVERY_TENANT))[-1].payload["to"] == "cancelled"


async def test_cancel_running_sets_flag_once(store: TaskStore) -> None:
    claim = await running_task(store)
    other = await running_task(store)
    task = await store.request_cancel(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.RUNNING and task.cancel_requested
    again = await store.request_cancel(claim.task.id, tenant=EVERY_TENANT)
    assert again.cancel_requested
    types = [e.type for e in await store.list_events(claim.task.id, tenant=EVERY_TENANT)]
    assert types.count("cancel_requested") == 1
    assert await store.cancel_requested([claim.task.id, other.task.id, unknown_id()]) == {claim.task.id}
    assert await store.cancel_requested([]) == set()
    assert await store.finish_cancelled(claim.task.id, 1, **USAGE)
    assert await store.cancel_requested([claim.task.id]) == set()


async def test_cancel_terminal_or_unknown(store: TaskStore) -> None:
    claim = await running_task(store)
    await store.complete(claim.task.id, 1, result=None, **USAGE)
    with pytest.raises(TaskFinished):
        await store.request_cancel(claim.task.id, tenant=EVERY_TENANT)
    with pytest.raises(TaskNotFound):
        await store.request_cancel(unknown_id(), tenant=EVERY_TENANT)


async def test_cancel_races_with_claim(store: TaskStore) -> None:
    task = await make_task(store)
    claim, cancelled = await asyncio.gather(
        store.claim(task.id, "w1"), store.request_cancel(task.id, tenant=EVERY_TENANT)
    )
    final = await store.get(task.id, tenant=EVERY_TENANT)
    if claim is None:
        assert final.status is TaskStatus.CANCELLED
    else:
        assert final.status is TaskStatus.RUNNING and final.cancel_requested and cancelled.cancel_requested


async def test_retry_failed_gives_fresh_budget(store: TaskStore) -> None:
    claim = await running_task(store, max_retries=1)
    await store.fail(claim.task.id, 1, error_type="tool_error", error_message="x", **USAGE)
    task = await store.retry(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.PENDING and task.error_type is None and task.finished_at is None
    assert (task.attempts, task.max_retries, task.retry_base, task.configured_max_retries) == (1, 2, 1, 1)
    assert len(task.attempt_errors) == 1 and task.published_at is None
    again = await store.claim(task.id, "w1")
    assert again is not None and again.attempt == 2


async def test_retry_cancelled_and_conflicts(store: TaskStore) -> None:
    task = await make_task(store, schedule_to_start_seconds=3600)
    await store.request_cancel(task.id, tenant=EVERY_TENANT)
    retried = await store.retry(task.id, tenant=EVERY_TENANT)
    assert retried.status is TaskStatus.PENDING and not retried.cancel_requested
    with pytest.raises(Conflict):
        await store.retry(task.id, tenant=EVERY_TENANT)
    with pytest.raises(TaskNotFound):
        await store.retry(unknown_id(), tenant=EVERY_TENANT)
    assert await store.claim(task.id, "w1") is not None


async def test_workers_registry(store: TaskStore) -> None:
    await store.register_worker("w1", "host-a", 11, 4)
    await store.register_worker("w2", "host-b", 12, 8)
    claim = await running_task(store, worker="w1")
    await store.heartbeat("w1")
    live = {w.id: w for w in await store.live_workers(stale_after=60)}
    assert set(live) == {"w1", "w2"}
    assert live["w1"].running_task_ids == [claim.task.id] and live["w2"].running_task_ids == []
    assert (live["w1"].host, live["w1"].pid, live["w1"].concurrency) == ("host-a", 11, 4)
    await store.deregister_worker("w2")
    assert [w.id for w in await store.live_workers(stale_after=60)] == ["w1"]
    await store.register_worker("w2", "host-b", 13, 8)  # a restart under the same id
    assert {w.id for w in await store.live_workers(stale_after=60)} == {"w1", "w2"}


async def test_requeue_orphans_of_a_stale_worker(store: TaskStore) -> None:
    await store.register_worker("dead", "h", 1, 2)
    await store.register_worker("alive", "h", 2, 2)
    orphan = await running_task(store, worker="dead", max_retries=1)
    await store.mark_published([orphan.task.id])
    last_try = await running_task(store, worker="dead", max_retries=0)
    kept = await running_task(store, worker="alive")
    assert await store.requeue_orphans(stale_after=3600) == []
    await store.heartbeat("alive")
    await store.deregister_worker("dead")
    moved = await store.requeue_orphans(stale_after=3600)
    assert set(moved) == {orphan.task.id, last_try.task.id}
    requeued = await store.get(orphan.task.id, tenant=EVERY_TENANT)
    assert (requeued.status, requeued.attempts, requeued.published_at) == (TaskStatus.PENDING, 1, None)
    assert requeued.attempt_errors[-1]["type"] == ErrorType.WORKER_LOST
    assert [e.type for e in await store.list_events(orphan.task.id, tenant=EVERY_TENANT)][-2:] == ["requeued", "status"]
    failed = await store.get(last_try.task.id, tenant=EVERY_TENANT)
    assert failed.status is TaskStatus.FAILED and failed.error_type == ErrorType.WORKER_LOST
    assert (await store.get(kept.task.id, tenant=EVERY_TENANT)).status is TaskStatus.RUNNING
    again = await store.claim(orphan.task.id, "alive")
    assert again is not None and again.attempt == 2


async def test_requeue_orphans_by_heartbeat_age_and_concurrently(store: TaskStore) -> None:
    await store.register_worker("w", "h", 1, 8)
    claims = [await running_task(store, worker="w") for _ in range(4)]
    results = await asyncio.gather(*(store.requeue_orphans(stale_after=0) for _ in range(5)))
    moved = [task_id for result in results for task_id in result]
    assert sorted(moved) == sorted(c.task.id for c in claims)  # each exactly once
    for claim in claims:
        task = await store.get(claim.task.id, tenant=EVERY_TENANT)
        assert task.status is TaskStatus.PENDING and len(task.attempt_errors) == 1


async def test_a_worker_never_requeues_its_own_runs_however_stale_its_heartbeat(store: TaskStore) -> None:
    await store.register_worker("me", "h", 1, 8)
    await store.register_worker("other", "h", 2, 8)
    mine = await running_task(store, worker="me")
    theirs = await running_task(store, worker="other")

    assert await store.requeue_orphans(stale_after=0, caller="me") == [theirs.task.id]
    assert (await store.get(mine.task.id, tenant=EVERY_TENANT)).status is TaskStatus.RUNNING
    assert await store.requeue_orphans(stale_after=0) == [mine.task.id]


async def test_requeue_orphans_with_unknown_worker_waits_for_grace(store: TaskStore) -> None:
    claim = await running_task(store, worker="never-registered")
    assert await store.requeue_orphans(stale_after=3600) == []
    assert await store.requeue_orphans(stale_after=0) == [claim.task.id]


async def test_fail_expired(store: TaskStore) -> None:
    claim = await running_task(store, timeout_seconds=1)
    assert await store.fail_expired() == []
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert await store.fail_expired(later) == [claim.task.id]
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.FAILED and task.error_type == ErrorType.TIMEOUT


async def test_ping(store: TaskStore) -> None:
    await store.ping()


async def test_unreachable_database_is_unavailable() -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    settings = Settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:9/none", db_timeout_seconds=2)
    engine = create_engine(settings)
    try:
        with pytest.raises(DatabaseUnavailable):
            await open_store(engine).ping()
        with pytest.raises(DatabaseUnavailable):
            await open_store(engine).get(unknown_id(), tenant=EVERY_TENANT)
    finally:
        await engine.dispose()


@pytest.mark.integration
async def test_statement_timeout_is_unavailable(pg_url: str) -> None:
    engine = create_engine(Settings(database_url=pg_url, db_timeout_seconds=0.5))
    try:
        store = PostgresStore(engine)
        with pytest.raises(DatabaseUnavailable):
            async with store._db() as db:
                await db.execute("SELECT pg_sleep(3)")
    finally:
        await engine.dispose()
