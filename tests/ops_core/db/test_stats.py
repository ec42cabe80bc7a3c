"""``stats``, on both backends: a tenant's tasks submitted since a time, by status, queue lag and finish time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from ops_core.db.models import TASKS, Task
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import USAGE, make_task, running_task

LAG = timedelta(seconds=30)


async def submitted_earlier(store: TaskStore, task: Task, by: timedelta) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(update(TASKS).where(TASKS.c.id == task.id).values(created_at=task.created_at - by))


async def test_stats_count_the_tenants_recent_tasks_by_status_lag_and_finish_time(store: TaskStore) -> None:
    since = utcnow() - timedelta(minutes=10)
    done = await running_task(store, tenant="a")
    await submitted_earlier(store, done.task, LAG)  # it waited 30 s for a worker
    await store.complete(done.task.id, done.attempt, result="ok", **USAGE)
    broken = await running_task(store, tenant="a")
    await store.fail(broken.task.id, broken.attempt, error_type="tool_error", error_message="x", **USAGE)
    await make_task(store, tenant="a")  # still pending: counted, never started
    old = await running_task(store, tenant="a")
    await submitted_earlier(store, old.task, timedelta(hours=2))  # before the window: not counted
    await store.complete(old.task.id, old.attempt, result="ok", **USAGE)
    other = await running_task(store, tenant="b")
    await store.complete(other.task.id, other.attempt, result="ok", **USAGE)

    stats = await store.stats(tenant="a", since=since, bucket_seconds=60)

    counts = {row.status: row.tasks for row in stats.by_status}
    assert counts == {TaskStatus.COMPLETED: 1, TaskStatus.FAILED: 1, TaskStatus.PENDING: 1}
    assert sum(row.started for row in stats.by_status) == 2
    lag_max = max(row.lag_max for row in stats.by_status)
    lag_sum = sum(row.lag_sum for row in stats.by_status)
    # Seconds, not days or microseconds: the completed task's 30 s wait, the failed one's moment.
    assert LAG.total_seconds() <= lag_max < LAG.total_seconds() + 5
    assert lag_max <= lag_sum < lag_max + 5
    # Both finished just now: ten minutes into the window, in 60-second buckets.
    assert {(row.status, row.tasks) for row in stats.finished} == {(TaskStatus.COMPLETED, 1), (TaskStatus.FAILED, 1)}
    assert {row.bucket for row in stats.finished} <= {9, 10}

    everyone = await store.stats(tenant=EVERY_TENANT, since=since, bucket_seconds=60)
    assert sum(row.tasks for row in everyone.by_status) == 4
    later = await store.stats(tenant="a", since=utcnow() + timedelta(minutes=1), bucket_seconds=60)
    assert later.by_status == [] and later.finished == []
