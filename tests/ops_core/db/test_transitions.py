"""Every store method that changes a status makes a move the lifecycle's table allows, on both backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from ops_core.db.models import Task
from ops_core.db.rules import MAX_ATTEMPT_ERRORS
from ops_core.db.store import TaskStore
from ops_core.errors import Conflict
from ops_core.lifecycle import TRANSITIONS, TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import USAGE, make_task, running_task

Scenario = Callable[[TaskStore], Awaitable[tuple[Task, Task]]]


async def _claim(store: TaskStore) -> tuple[Task, Task]:
    task = await make_task(store)
    await store.claim(task.id, "w1")
    return task, await store.get(task.id, tenant=EVERY_TENANT)


async def _running_then(store: TaskStore, write: Callable[[Task], Awaitable[object]]) -> tuple[Task, Task]:
    claim = await running_task(store)
    await write(claim.task)
    return claim.task, await store.get(claim.task.id, tenant=EVERY_TENANT)


async def _complete(store: TaskStore) -> tuple[Task, Task]:
    return await _running_then(store, lambda t: store.complete(t.id, 1, result=1, **USAGE))


async def _fail(store: TaskStore) -> tuple[Task, Task]:
    return await _running_then(store, lambda t: store.fail(t.id, 1, error_type="x", error_message="y", **USAGE))


async def _schedule_retry(store: TaskStore) -> tuple[Task, Task]:
    now = datetime.now(UTC)
    return await _running_then(
        store, lambda t: store.schedule_retry(t.id, 1, error_type="x", error_message="y", run_after=now, **USAGE)
    )


async def _finish_cancelled(store: TaskStore) -> tuple[Task, Task]:
    return await _running_then(store, lambda t: store.finish_cancelled(t.id, 1, **USAGE))


async def _hand_back(store: TaskStore) -> tuple[Task, Task]:
    return await _running_then(store, lambda t: store.hand_back(t.id, 1, reason="shutdown"))


async def _cancel_pending(store: TaskStore) -> tuple[Task, Task]:
    task = await make_task(store)
    await store.request_cancel(task.id, tenant=EVERY_TENANT)
    return task, await store.get(task.id, tenant=EVERY_TENANT)


async def _manual_retry_of_failed(store: TaskStore) -> tuple[Task, Task]:
    _, failed = await _fail(store)
    await store.retry(failed.id, tenant=EVERY_TENANT)
    return failed, await store.get(failed.id, tenant=EVERY_TENANT)


async def _manual_retry_of_cancelled(store: TaskStore) -> tuple[Task, Task]:
    _, cancelled = await _cancel_pending(store)
    await store.retry(cancelled.id, tenant=EVERY_TENANT)
    return cancelled, await store.get(cancelled.id, tenant=EVERY_TENANT)


async def _orphan_requeued(store: TaskStore) -> tuple[Task, Task]:
    return await _running_then(store, lambda t: store.requeue_orphans(stale_after=0))


async def _orphan_out_of_retries(store: TaskStore) -> tuple[Task, Task]:
    claim = await running_task(store, max_retries=0)
    await store.requeue_orphans(stale_after=0)
    return claim.task, await store.get(claim.task.id, tenant=EVERY_TENANT)


async def _expired(store: TaskStore) -> tuple[Task, Task]:
    later = datetime.now(UTC) + timedelta(hours=2)
    return await _running_then(store, lambda t: store.fail_expired(later))


async def _unstarted(store: TaskStore) -> tuple[Task, Task]:
    task = await make_task(store, schedule_to_start_seconds=0)
    await store.fail_unstarted()
    return task, await store.get(task.id, tenant=EVERY_TENANT)


async def _unstarted_at_claim(store: TaskStore) -> tuple[Task, Task]:
    task = await make_task(store, schedule_to_start_seconds=0)
    await store.claim(task.id, "w1")
    return task, await store.get(task.id, tenant=EVERY_TENANT)


SCENARIOS: dict[str, tuple[Scenario, TaskStatus]] = {
    "claim": (_claim, TaskStatus.RUNNING),
    "complete": (_complete, TaskStatus.COMPLETED),
    "fail": (_fail, TaskStatus.FAILED),
    "schedule_retry": (_schedule_retry, TaskStatus.PENDING),
    "finish_cancelled": (_finish_cancelled, TaskStatus.CANCELLED),
    "hand_back": (_hand_back, TaskStatus.PENDING),
    "request_cancel": (_cancel_pending, TaskStatus.CANCELLED),
    "retry_failed": (_manual_retry_of_failed, TaskStatus.PENDING),
    "retry_cancelled": (_manual_retry_of_cancelled, TaskStatus.PENDING),
    "requeue_orphans": (_orphan_requeued, TaskStatus.PENDING),
    "requeue_orphans_exhausted": (_orphan_out_of_retries, TaskStatus.FAILED),
    "fail_expired": (_expired, TaskStatus.FAILED),
    "fail_unstarted": (_unstarted, TaskStatus.FAILED),
    "claim_past_deadline": (_unstarted_at_claim, TaskStatus.FAILED),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_each_status_change_is_in_the_lifecycle_table(store: TaskStore, name: str) -> None:
    scenario, expected = SCENARIOS[name]
    before, after = await scenario(store)
    assert after.status is expected
    assert (before.status, after.status) in TRANSITIONS
    # The status event the write recorded names the same move.
    last_status = [e for e in await store.list_events(after.id, tenant=EVERY_TENANT) if e.type == "status"][-1]
    assert (last_status.payload["from"], last_status.payload["to"]) == (before.status.value, after.status.value)


async def test_the_last_worker_stays_on_a_finished_task(store: TaskStore) -> None:
    _, done = await _complete(store)
    assert done.worker_id == "w1"


async def test_manual_retries_are_bounded(store: TaskStore) -> None:
    store.policy = type(store.policy)(max_manual_retries=2)
    _, task = await _fail(store)
    for attempt in (2, 3):
        await store.retry(task.id, tenant=EVERY_TENANT)
        claim = await store.claim(task.id, "w1")
        assert claim is not None and claim.attempt == attempt
        assert await store.fail(task.id, attempt, error_type="x", error_message="y", **USAGE)
    with pytest.raises(Conflict, match="2 times"):
        await store.retry(task.id, tenant=EVERY_TENANT)
    assert (await store.get(task.id, tenant=EVERY_TENANT)).manual_retries == 2


async def test_attempt_errors_keep_the_newest_and_summarise_the_rest(store: TaskStore) -> None:
    claim = await running_task(store, max_retries=100)
    total = MAX_ATTEMPT_ERRORS + 5
    for attempt in range(1, total + 1):
        now = datetime.now(UTC)
        message = f"error {attempt} " + "x" * 5000
        assert await store.schedule_retry(
            claim.task.id, attempt, error_type="model_error", error_message=message, run_after=now, **USAGE
        )
        assert await store.claim(claim.task.id, "w1") is not None
    errors = (await store.get(claim.task.id, tenant=EVERY_TENANT)).attempt_errors
    assert len(errors) == MAX_ATTEMPT_ERRORS
    summary, *kept = errors
    assert summary["type"] == "summary" and summary["folded"] == total - len(kept)
    assert (summary["first_attempt"], summary["attempt"]) == (1, total - len(kept))
    assert [e["attempt"] for e in kept] == list(range(total - len(kept) + 1, total + 1))
    assert all(len(e["message"]) <= 2000 for e in kept)
