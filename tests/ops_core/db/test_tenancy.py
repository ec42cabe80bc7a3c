"""Tenant isolation and tenant slots, on both backends: the store filters, not only the routes."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest

from ops_core.db.access import AccessStore
from ops_core.db.rules import HELD_AT, utcnow
from ops_core.db.store import TaskStore
from ops_core.errors import TaskNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import USAGE, make_task, new_task

# What a caller (the API, the CLI) asks of the store; each must name a tenant scope.
CALLER_OPERATIONS = ("get", "list", "list_events", "request_cancel", "retry", "usage")


@pytest.mark.parametrize("name", CALLER_OPERATIONS)
def test_every_caller_operation_requires_a_tenant_with_no_default(name: str) -> None:
    parameter = inspect.signature(getattr(TaskStore, name)).parameters["tenant"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is inspect.Parameter.empty


async def test_a_read_without_a_tenant_cannot_be_made(store: TaskStore) -> None:
    task = await make_task(store)
    with pytest.raises(TypeError, match="tenant"):
        await store.get(task.id)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="tenant"):
        await store.list()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="tenant"):
        await store.request_cancel(task.id)  # type: ignore[call-arg]


async def test_a_task_is_not_found_from_another_tenant(store: TaskStore) -> None:
    mine = await make_task(store, tenant="a")
    theirs = await make_task(store, tenant="b")

    assert (await store.get(mine.id, tenant="a")).id == mine.id
    for call in (
        store.get(theirs.id, tenant="a"),
        store.list_events(theirs.id, tenant="a"),
        store.request_cancel(theirs.id, tenant="a"),
        store.retry(theirs.id, tenant="a"),
    ):
        with pytest.raises(TaskNotFound):
            await call
    assert [t.id for t in (await store.list(tenant="a")).items] == [mine.id]
    assert {t.id for t in (await store.list(tenant=EVERY_TENANT)).items} == {mine.id, theirs.id}
    assert (await store.get(theirs.id, tenant="b")).status is TaskStatus.PENDING  # untouched


async def test_idempotency_keys_are_per_tenant(store: TaskStore) -> None:
    first, created_a = await store.create(new_task(tenant="a", idempotency_key="k"))
    second, created_b = await store.create(new_task(tenant="b", idempotency_key="k"))
    again, created_again = await store.create(new_task(tenant="a", idempotency_key="k"))

    assert created_a and created_b and not created_again
    assert first.id != second.id
    assert again.id == first.id


async def test_usage_totals_by_tenant_agent_and_model(store: TaskStore) -> None:
    for tenant, agent in (("a", "echo"), ("a", "echo"), ("a", "other"), ("b", "echo")):
        claim = await store.claim((await make_task(store, tenant=tenant, agent=agent)).id, "w1")
        assert claim is not None
        await store.complete(claim.task.id, claim.attempt, result="ok", **USAGE)

    totals = await store.usage(tenant="a", since=utcnow() - timedelta(hours=1))
    assert [(u.agent, u.tasks, u.input_tokens, u.output_tokens) for u in totals] == [
        ("echo", 2, 2 * USAGE["input_tokens"], 2 * USAGE["output_tokens"]),
        ("other", 1, USAGE["input_tokens"], USAGE["output_tokens"]),
    ]
    assert {u.tenant for u in await store.usage(tenant=EVERY_TENANT, since=utcnow() - timedelta(hours=1))} == {
        "a",
        "b",
    }
    assert await store.usage(tenant="a", since=utcnow() + timedelta(hours=1)) == []


async def test_a_tenant_at_its_running_limit_has_its_tasks_held_in_order(store: TaskStore) -> None:
    await AccessStore(store.engine).set_quotas("a", {"max_running": 1})
    first, second, third = [await make_task(store, tenant="a") for _ in range(3)]
    other = await make_task(store, tenant="b")

    # The newest arrives first: an older task is waiting, so it is held, not started.
    assert await store.claim(third.id, "w1") is None
    assert (await store.get(third.id, tenant="a")).published_at == HELD_AT
    running = await store.claim(first.id, "w1")
    assert running is not None
    assert await store.claim(second.id, "w2") is None  # the slot is taken
    assert await store.claim(other.id, "w1") is not None  # other tenants are not limited

    # The relay publishes nothing of tenant a while its slot is taken ...
    due = await store.due_for_publish(limit=10, republish_before=utcnow())
    assert {t.id for t in due} & {second.id, third.id} == set()
    await store.complete(running.task.id, running.attempt, result="ok", **USAGE)
    # ... and then the oldest waiting task only.
    due = await store.due_for_publish(limit=10, republish_before=utcnow())
    assert [t.id for t in due if t.tenant == "a"] == [second.id]
    assert await store.claim(second.id, "w2") is not None
    assert (await store.get(second.id, tenant="a")).status is TaskStatus.RUNNING
    assert (await store.get(third.id, tenant="a")).status is TaskStatus.PENDING


async def test_a_raised_limit_releases_held_tasks(store: TaskStore) -> None:
    access = AccessStore(store.engine)
    await access.set_quotas("a", {"max_running": 1})
    tasks = [await make_task(store, tenant="a") for _ in range(3)]
    assert await store.claim(tasks[0].id, "w1") is not None
    assert await store.claim(tasks[1].id, "w1") is None

    await access.set_quotas("a", {"max_running": None})
    due = await store.due_for_publish(limit=10, republish_before=utcnow())
    assert {t.id for t in due} >= {tasks[1].id}
    assert await store.claim(tasks[1].id, "w1") is not None
    assert await store.claim(tasks[2].id, "w1") is not None
