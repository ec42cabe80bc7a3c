"""Concurrency keys and tenant slots, one mechanism (rules.py, slots), on both backends.

A task over a limit is held (pending, ``published_at`` HELD_AT, no worker slot), and the relay's
``due_for_publish`` hands out exactly the tasks that are claimable now, oldest first.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from ops_core.db.access import AccessStore
from ops_core.db.approvals import ApprovalStore, NewApproval
from ops_core.db.models import Claim, Task
from ops_core.db.rules import HELD_AT, utcnow
from ops_core.db.store import TaskStore
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import TENANT, USAGE, make_task


async def keyed(store: TaskStore, count: int, key: str = "A", limit: int = 1, **overrides: Any) -> list[Task]:
    """``count`` tasks of ``key``, created one after another (so created_at orders them)."""
    return [await make_task(store, concurrency_key=key, concurrency_limit=limit, **overrides) for _ in range(count)]


async def claimed(store: TaskStore, task: Task, worker: str = "w1") -> Claim:
    claim = await store.claim(task.id, worker)
    assert claim is not None, f"task {task.id} was held"
    return claim


async def is_held(store: TaskStore, task: Task, worker: str = "w1") -> bool:
    if await store.claim(task.id, worker) is not None:
        return False
    stored = await store.get(task.id, tenant=EVERY_TENANT)
    assert stored.status is TaskStatus.PENDING and stored.published_at == HELD_AT
    return True


async def due(store: TaskStore, among: list[Task]) -> list[Task]:
    """Of ``among``, what the relay would publish now (held tasks included), in its order."""
    wanted = {t.id for t in among}
    return [t for t in await store.due_for_publish(limit=500, republish_before=utcnow()) if t.id in wanted]


async def finish(store: TaskStore, claim: Claim) -> None:
    assert await store.complete(claim.task.id, claim.attempt, result="ok", **USAGE)


def ids(tasks: list[Task]) -> list[Any]:
    return [t.id for t in tasks]


async def test_the_key_and_its_limit_are_stored(store: TaskStore) -> None:
    (task,) = await keyed(store, 1, key="customer:42", limit=3)
    stored = await store.get(task.id, tenant=TENANT)
    assert (stored.concurrency_key, stored.concurrency_limit) == ("customer:42", 3)
    plain = await make_task(store)
    assert (plain.concurrency_key, plain.concurrency_limit) == (None, None)


async def test_a_key_with_limit_one_runs_its_tasks_one_at_a_time_in_order(store: TaskStore) -> None:
    first, second, third = await keyed(store, 3)

    # The newest arrives first: an older task of its key is waiting, so it is held, not started.
    assert await is_held(store, third)
    running = await claimed(store, first)
    assert await is_held(store, second, "w2")
    assert await due(store, [first, second, third]) == []

    await finish(store, running)
    assert ids(await due(store, [second, third])) == [second.id]
    running = await claimed(store, second, "w2")
    assert await is_held(store, third)
    await finish(store, running)
    assert ids(await due(store, [third])) == [third.id]
    await claimed(store, third)


async def test_a_key_with_limit_n_runs_n_at_once(store: TaskStore) -> None:
    tasks = await keyed(store, 5, limit=3)

    claims = [await claimed(store, t) for t in tasks[:3]]
    assert await is_held(store, tasks[3])
    assert await is_held(store, tasks[4])
    assert await due(store, tasks) == []

    await finish(store, claims[1])
    assert ids(await due(store, tasks)) == [tasks[3].id]
    await claimed(store, tasks[3])
    assert await is_held(store, tasks[4])


async def test_keys_do_not_interfere_and_belong_to_their_tenant(store: TaskStore) -> None:
    a1, a2 = await keyed(store, 2, key="A")
    (b1,) = await keyed(store, 1, key="B")
    (other_a,) = await keyed(store, 1, key="A", tenant="t2")  # another tenant's "A" is another group
    plain = await make_task(store)

    await claimed(store, a1)
    await claimed(store, b1)
    await claimed(store, other_a)
    await claimed(store, plain)
    assert await is_held(store, a2)


async def test_a_key_and_its_tenant_limit_hold_together(store: TaskStore) -> None:
    await AccessStore(store.engine).set_quotas(TENANT, {"max_running": 2})
    a1, a2 = await keyed(store, 2, limit=1)
    n1, n2 = [await make_task(store) for _ in range(2)]

    a1_run = await claimed(store, a1)
    assert await is_held(store, a2)  # its key's slot is taken
    n1_run = await claimed(store, n1)  # a2 is blocked by its key, so it takes no tenant slot
    assert await is_held(store, n2)  # the tenant's two slots are taken
    assert await due(store, [a2, n2]) == []

    await finish(store, n1_run)
    assert ids(await due(store, [a2, n2])) == [n2.id]  # a2's key is still full
    await claimed(store, n2)
    await finish(store, a1_run)
    assert ids(await due(store, [a2])) == [a2.id]  # its key is free, and its tenant runs only n2
    await claimed(store, a2)


async def test_a_full_tenant_holds_a_task_whose_key_is_free(store: TaskStore) -> None:
    await AccessStore(store.engine).set_quotas(TENANT, {"max_running": 1})
    plain = await make_task(store)
    (a1,) = await keyed(store, 1, limit=5)

    running = await claimed(store, plain)
    assert await is_held(store, a1)
    await finish(store, running)
    assert ids(await due(store, [a1])) == [a1.id]
    await claimed(store, a1)


async def test_a_busy_key_does_not_block_its_tenants_other_tasks(store: TaskStore) -> None:
    # The tenant may run 5; key A may run 1 and has a long queue. The queue must not hold back the
    # tenant's keyless tasks, submitted after it (no head-of-line blocking).
    await AccessStore(store.engine).set_quotas(TENANT, {"max_running": 5})
    queue = await keyed(store, 30, key="A", limit=1)
    plain = [await make_task(store) for _ in range(5)]

    await claimed(store, queue[0])
    for task in reversed(queue[1:]):
        assert await is_held(store, task)
    for task in plain[:4]:
        await claimed(store, task)
    assert await is_held(store, plain[4])  # 1 of A + 4 keyless: the tenant is full
    assert await due(store, [*queue, *plain]) == []

    running = await store.list(tenant=TENANT, status=TaskStatus.RUNNING, limit=100)
    assert len(running.items) == 5


async def test_held_tasks_are_released_in_order_as_slots_free(store: TaskStore) -> None:
    tasks = await keyed(store, 6, limit=2)
    running = [await claimed(store, t) for t in tasks[:2]]
    for task in tasks[2:]:
        assert await is_held(store, task)

    started = [t.id for t in tasks[:2]]
    while running:
        await finish(store, running.pop(0))
        released = await due(store, tasks)
        if len(started) < len(tasks):
            # One slot freed: exactly the oldest held task, nothing else.
            assert ids(released) == [tasks[len(started)].id]
            running.append(await claimed(store, released[0]))
            started.append(released[0].id)
        else:
            assert released == []
    assert started == ids(tasks)


async def test_a_waiting_task_frees_its_slot(store: TaskStore) -> None:
    first, second = await keyed(store, 2)
    claim = await claimed(store, first)
    assert await is_held(store, second)

    asked = NewApproval(
        step=1, call_id="c1", tool="send_email", arguments={}, reason="r", expires_at=utcnow() + timedelta(hours=1)
    )
    suspended = await ApprovalStore(store.engine).suspend(
        claim.task.id, claim.attempt, checkpoint={}, approvals=[asked], input_tokens=0, output_tokens=0
    )
    assert suspended
    assert ids(await due(store, [second])) == [second.id]
    await claimed(store, second)


async def test_a_failed_or_cancelled_task_frees_its_slot(store: TaskStore) -> None:
    first, second, third = await keyed(store, 3)
    claim = await claimed(store, first)
    assert await store.fail(claim.task.id, claim.attempt, error_type="agent_error", error_message="boom", **USAGE)
    claim = await claimed(store, second)
    await store.request_cancel(second.id, tenant=TENANT)
    assert await store.finish_cancelled(second.id, claim.attempt, **USAGE)
    await claimed(store, third)


async def test_a_task_waiting_for_its_retry_takes_no_place(store: TaskStore) -> None:
    first, second = await keyed(store, 2)
    claim = await claimed(store, first)
    # Back to pending with a run_after in the future: not due, so it is not ahead of the second.
    assert await store.schedule_retry(
        claim.task.id,
        claim.attempt,
        error_type="provider_error",
        error_message="429",
        run_after=utcnow() + timedelta(hours=1),
        **USAGE,
    )
    await claimed(store, second)


async def test_concurrent_claims_of_one_key_start_only_its_oldest(store: TaskStore) -> None:
    tasks = await keyed(store, 12, limit=3)

    claims = await asyncio.gather(*(store.claim(t.id, f"w{i % 4}") for i, t in enumerate(reversed(tasks))))

    started = {c.task.id for c in claims if c is not None}
    assert started == {t.id for t in tasks[:3]}


async def test_concurrent_claims_across_keys_and_a_tenant_limit_start_exactly_the_claimable(
    store: TaskStore,
) -> None:
    # Tenant lock, then key lock, on every claim: many at once must neither deadlock nor over-admit.
    await AccessStore(store.engine).set_quotas(TENANT, {"max_running": 3})
    tasks: list[Task] = []
    for _ in range(4):
        tasks += await keyed(store, 1, key="A")
        tasks += await keyed(store, 1, key="B")
        tasks.append(await make_task(store))

    claims = await asyncio.gather(*(store.claim(t.id, f"w{i % 4}") for i, t in enumerate(reversed(tasks))))

    # A1 and B1 lead their keys; the tenant's three slots go to the oldest tasks no key blocks.
    assert {c.task.id for c in claims if c is not None} == {t.id for t in tasks[:3]}
