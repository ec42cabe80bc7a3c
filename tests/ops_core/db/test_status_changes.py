"""What streams read from the store, on both backends: task heads, and a tenant's status changes."""

from __future__ import annotations

from ops_core.db.store import TaskStore
from ops_core.lifecycle import TaskStatus
from tests.ops_core.db.helpers import USAGE, make_task, running_task


async def test_heads_give_each_tasks_last_seq_and_status(store: TaskStore) -> None:
    waiting = await make_task(store)
    claim = await running_task(store)
    await store.complete(claim.task.id, claim.attempt, result="ok", **USAGE)

    heads = await store.event_heads([waiting.id, claim.task.id])

    assert heads[waiting.id].last_event_seq == 1 and heads[waiting.id].status is TaskStatus.PENDING
    assert heads[claim.task.id].last_event_seq == 3 and heads[claim.task.id].status is TaskStatus.COMPLETED


async def test_status_changes_are_the_tenants_in_order_and_filtered(store: TaskStore) -> None:
    start = await store.last_event_id()
    mine = await running_task(store, tenant="a", agent="writer")
    await store.complete(mine.task.id, mine.attempt, result="ok", **USAGE)
    other_agent = await make_task(store, tenant="a", agent="reader")
    await make_task(store, tenant="b", agent="writer")

    changes = await store.status_changes(tenant="a", after_id=start)
    assert [(c.task_id, c.payload["to"]) for c in changes] == [
        (mine.task.id, "pending"),
        (mine.task.id, "running"),
        (mine.task.id, "completed"),
        (other_agent.id, "pending"),
    ]
    assert [c.id for c in changes] == sorted(c.id for c in changes) and all(c.id > start for c in changes)
    assert changes[1].agent == "writer" and changes[1].attempt == 1

    writers = await store.status_changes(tenant="a", after_id=start, agent="writer")
    assert {c.agent for c in writers} == {"writer"} and len(writers) == 3
    completed = await store.status_changes(tenant="a", after_id=start, status=TaskStatus.COMPLETED)
    assert [c.payload["to"] for c in completed] == ["completed"]
    after = await store.status_changes(tenant="a", after_id=changes[1].id, limit=1)
    assert [c.id for c in after] == [changes[2].id]
    assert await store.last_event_id() >= changes[-1].id
