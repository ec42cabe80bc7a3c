"""Many tasks in one call (``POST /v1/tasks/batch``'s store operation), and the submission rate counting each, on both
backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ops_core.db.access import AccessStore
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.lifecycle import TaskStatus
from tests.ops_core.db.helpers import TENANT, new_task


async def test_many_tasks_are_created_in_order_each_with_its_created_event(store: TaskStore) -> None:
    news = [new_task(goal=f"task {i}") for i in range(250)]

    results = await store.create_many(TENANT, news)

    assert [created for _, created in results] == [True] * 250
    assert [task.goal for task, _ in results] == [f"task {i}" for i in range(250)]
    assert len({task.id for task, _ in results}) == 250
    for task, _ in results[::50]:
        stored = await store.get(task.id, tenant=TENANT)
        assert (stored.status, stored.goal, stored.last_event_seq) == (TaskStatus.PENDING, task.goal, 1)
        events = await store.list_events(task.id, tenant=TENANT)
        assert [(e.seq, e.type, e.payload["to"]) for e in events] == [(1, "status", "pending")]
    # Unpublished until the service publishes them: the relay would find every one.
    due = await store.due_for_publish(limit=1000, now=utcnow() + timedelta(minutes=5))
    assert {task.id for task, _ in results} == {task.id for task in due}


async def test_known_keys_answer_the_existing_task_and_repeats_within_the_call_are_one_task(store: TaskStore) -> None:
    ((first, _),) = await store.create_many(TENANT, [new_task(goal="a", idempotency_key="k1")])

    results = await store.create_many(
        TENANT,
        [
            new_task(goal="a", idempotency_key="k1"),
            new_task(goal="b", idempotency_key="k2"),
            new_task(goal="b", idempotency_key="k2"),
            new_task(goal="c"),
        ],
    )

    assert [(task.goal, created) for task, created in results] == [("a", False), ("b", True), ("b", False), ("c", True)]
    assert results[0][0].id == first.id
    assert results[1][0].id == results[2][0].id
    page = await store.list(tenant=TENANT, limit=50)
    assert sorted(task.goal for task in page.items) == ["a", "b", "c"]


async def test_concurrent_calls_with_one_key_create_one_task(store: TaskStore) -> None:
    calls = [store.create_many(TENANT, [new_task(goal="same", idempotency_key="k")]) for _ in range(5)]

    results = await asyncio.gather(*calls)

    ids = {result[0][0].id for result in results}
    assert len(ids) == 1
    assert sum(result[0][1] for result in results) == 1


async def test_one_call_takes_one_tenant(store: TaskStore) -> None:
    with pytest.raises(ValueError, match="one tenant"):
        await store.create_many(TENANT, [new_task(), new_task(tenant="other")])


async def test_a_batch_takes_what_the_rate_allows_and_says_when_the_rest_may_come(store: TaskStore) -> None:
    access = AccessStore(store.engine)
    now = utcnow()

    # 10 per second with a burst of 10: 10 now, the other 15 refused, the next one in 0.1 s.
    assert await access.take_submissions("t", 10.0, 10, 25, now) == (10, pytest.approx(0.1))
    assert await access.take_submissions("t", 10.0, 10, 5, now) == (0, pytest.approx(0.1))
    # Half a second later, 5 more have been earned; a single submission counts the same way.
    later = now + timedelta(seconds=0.5)
    assert await access.take_submissions("t", 10.0, 10, 3, later) == (3, 0.0)
    assert await access.take_submissions("t", 10.0, 10, 5, later) == (2, pytest.approx(0.1))
    assert await access.take_submission("t", 10.0, burst=10, now=later) == pytest.approx(0.1)
