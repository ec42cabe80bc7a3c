"""The workflow store on both backends: starting steps once, settling them, failing, cancelling, reading."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import func, select, text

from ops_core.db.models import TASKS
from ops_core.db.store import TaskStore
from ops_core.db.workflows import Advanced, NewStep, NewWorkflow, WorkflowStore
from ops_core.errors import WorkflowFinished, WorkflowNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from ops_core.workflow_lifecycle import StepStatus, WorkflowStatus
from tests.ops_core.db.helpers import TENANT, USAGE


@pytest.fixture
async def workflows(store: TaskStore) -> AsyncIterator[WorkflowStore]:
    yield await _emptied(store)


@pytest.fixture
async def pg_workflows(pg_store: TaskStore) -> AsyncIterator[WorkflowStore]:
    yield await _emptied(pg_store)


async def _emptied(store: TaskStore) -> WorkflowStore:
    if store.engine.dialect.name == "postgresql":
        async with store.engine.begin() as conn:
            await conn.execute(text("TRUNCATE workflows CASCADE"))
    return WorkflowStore(store.engine)


def step(name: str, goal: str = "do it", depends_on: Sequence[str] = (), **options: Any) -> NewStep:
    continue_on_failure = options.pop("continue_on_failure", False)
    task = {
        "agent": "echo",
        "goal": goal,
        "input": {},
        "model": "offline:default",
        "max_retries": 0,
        "timeout_seconds": 60,
        "priority": 0,
        "schedule_to_start_seconds": None,
        "concurrency_key": None,
        "concurrency_limit": None,
        **options,
    }
    return NewStep(name=name, task=task, depends_on=depends_on, continue_on_failure=continue_on_failure)


def diamond() -> list[NewStep]:
    return [
        step("a", "research"),
        step("b", "expand on {{steps.a.result}}", ["a"]),
        step("c", "criticise {{ steps.a.result }}", ["a"]),
        step("d", "merge B={{steps.b.result}} and C={{steps.c.result.verdict}}", ["b", "c"]),
    ]


async def create(
    workflows: WorkflowStore, steps: list[NewStep], tenant: str = TENANT, key: str | None = None
) -> Advanced:
    new = NewWorkflow(tenant=tenant, steps=steps, request={"n": len(steps)}, idempotency_key=key)
    return await workflows.create(new)


def task_of(advanced: Advanced, name: str) -> uuid.UUID:
    task_id = {s.name: s.task_id for s in advanced.view.steps}[name]
    assert task_id is not None, f"step {name} has not started"
    return task_id


def statuses(advanced: Advanced) -> dict[str, StepStatus]:
    return {s.name: s.status for s in advanced.view.steps}


async def complete(store: TaskStore, task_id: uuid.UUID, result: Any, worker: str = "w1") -> None:
    claim = await store.claim(task_id, worker)
    assert claim is not None
    assert await store.complete(task_id, claim.attempt, result=result, **USAGE)


async def fail(store: TaskStore, task_id: uuid.UUID, message: str = "boom") -> None:
    claim = await store.claim(task_id, "w1")
    assert claim is not None
    assert await store.fail(task_id, claim.attempt, error_type="agent_error", error_message=message, **USAGE)


async def test_a_workflow_starts_its_roots_with_it(store: TaskStore, workflows: WorkflowStore) -> None:
    created = await create(workflows, diamond())
    assert created.created and created.view.workflow.status is WorkflowStatus.RUNNING
    assert statuses(created) == {"a": "started", "b": "blocked", "c": "blocked", "d": "blocked"}
    [root] = created.started
    assert root.id == task_of(created, "a") and root.goal == "research"
    stored = await store.get(root.id, tenant=TENANT)
    assert stored.workflow_id == created.view.workflow.id and stored.status is TaskStatus.PENDING
    assert stored.published_at is None  # the caller publishes; the relay would if it could not


async def test_a_diamond_fans_out_and_in_with_its_parents_results(store: TaskStore, workflows: WorkflowStore) -> None:
    created = await create(workflows, diamond())
    workflow_id = created.view.workflow.id
    await complete(store, task_of(created, "a"), "the facts")
    fanned = await workflows.advance(workflow_id)
    assert sorted(t.goal for t in fanned.started) == ["criticise the facts", "expand on the facts"]
    assert statuses(fanned) == {"a": "completed", "b": "started", "c": "started", "d": "blocked"}

    await complete(store, task_of(fanned, "b"), "long text")
    after_b = await workflows.advance(workflow_id)
    assert after_b.started == [] and statuses(after_b)["d"] == "blocked"  # fan-in waits for every parent
    await complete(store, task_of(fanned, "c"), {"verdict": "sound", "score": 9})
    joined = await workflows.advance(workflow_id)
    [d] = joined.started
    assert d.goal == "merge B=long text and C=sound"

    await complete(store, d.id, "done")
    finished = await workflows.advance(workflow_id)
    assert finished.view.workflow.status is WorkflowStatus.COMPLETED
    assert finished.view.workflow.finished_at is not None
    assert set(statuses(finished).values()) == {StepStatus.COMPLETED}
    again = await workflows.advance(workflow_id)
    assert again.started == [] and again.view.workflow.status is WorkflowStatus.COMPLETED


async def test_a_failed_step_fails_the_workflow_and_stops_the_rest(store: TaskStore, workflows: WorkflowStore) -> None:
    created = await create(workflows, [step("a"), step("side"), step("after", "x", ["a"])])
    await fail(store, task_of(created, "a"), "the model refused")
    failed = await workflows.advance(created.view.workflow.id)
    assert failed.view.workflow.status is WorkflowStatus.FAILED
    assert failed.view.workflow.reason == "step 'a' failed: the model refused"
    assert statuses(failed) == {"a": "failed", "side": "started", "after": "skipped"}
    assert failed.cancel == [task_of(created, "side")]  # the service cancels it after the commit


async def test_continue_on_failure_lets_dependents_start(store: TaskStore, workflows: WorkflowStore) -> None:
    steps = [step("a", continue_on_failure=True), step("b", "a was {{steps.a.status}}: {{steps.a.error}}", ["a"])]
    created = await create(workflows, steps)
    await fail(store, task_of(created, "a"), "timed out")
    advanced = await workflows.advance(created.view.workflow.id)
    assert [t.goal for t in advanced.started] == ["a was failed: timed out"]
    await complete(store, advanced.started[0].id, "ok")
    finished = await workflows.advance(created.view.workflow.id)
    assert finished.view.workflow.status is WorkflowStatus.COMPLETED
    assert statuses(finished) == {"a": "failed", "b": "completed"}


async def test_a_cancelled_step_task_fails_the_workflow(store: TaskStore, workflows: WorkflowStore) -> None:
    created = await create(workflows, [step("a"), step("b", "x", ["a"])])
    await store.request_cancel(task_of(created, "a"), tenant=TENANT)
    advanced = await workflows.advance(created.view.workflow.id)
    assert advanced.view.workflow.status is WorkflowStatus.FAILED
    assert statuses(advanced) == {"a": "cancelled", "b": "skipped"}


async def test_cancel_skips_what_waits_and_returns_what_runs(store: TaskStore, workflows: WorkflowStore) -> None:
    created = await create(workflows, diamond())
    workflow_id = created.view.workflow.id
    with pytest.raises(WorkflowNotFound):
        await workflows.cancel(workflow_id, tenant="someone-else")
    cancelled = await workflows.cancel(workflow_id, tenant=TENANT)
    assert cancelled.view.workflow.status is WorkflowStatus.CANCELLED
    assert cancelled.view.workflow.reason == "cancelled on request"
    assert statuses(cancelled) == {"a": "started", "b": "skipped", "c": "skipped", "d": "skipped"}
    assert cancelled.cancel == [task_of(created, "a")]
    with pytest.raises(WorkflowFinished):
        await workflows.cancel(workflow_id, tenant=TENANT)
    # The step's task ends later: the sweep finds it and settles the step; nothing starts.
    await store.request_cancel(task_of(created, "a"), tenant=TENANT)
    assert await workflows.due() == [workflow_id]
    settled = await workflows.advance(workflow_id)
    assert settled.started == [] and statuses(settled)["a"] == "cancelled"
    assert await workflows.due() == []


async def test_the_sweep_finds_a_step_whose_end_was_never_advanced(store: TaskStore, workflows: WorkflowStore) -> None:
    created = await create(workflows, [step("a"), step("b", "after {{steps.a.result}}", ["a"])])
    assert await workflows.due() == []
    # A worker completes the step and dies before it advances the workflow.
    await complete(store, task_of(created, "a"), "A")
    assert await workflows.due() == [created.view.workflow.id]
    repaired = await workflows.advance(created.view.workflow.id)
    assert [t.goal for t in repaired.started] == ["after A"]
    assert await workflows.due() == []


async def test_an_ended_workflow_with_an_uncancelled_step_is_due(store: TaskStore, workflows: WorkflowStore) -> None:
    created = await create(workflows, [step("a"), step("b")])
    await fail(store, task_of(created, "a"))
    failed = await workflows.advance(created.view.workflow.id)
    assert failed.cancel == [task_of(created, "b")]
    # The process died before it cancelled b: the sweep asks again, until the cancel is requested.
    assert await workflows.due() == [created.view.workflow.id]
    assert (await workflows.advance(created.view.workflow.id)).cancel == [task_of(created, "b")]
    await store.request_cancel(task_of(created, "b"), tenant=EVERY_TENANT)
    assert await workflows.due() == [created.view.workflow.id]  # b's task ended: settle it
    assert statuses(await workflows.advance(created.view.workflow.id))["b"] == "cancelled"
    assert await workflows.due() == []


async def test_an_idempotency_key_names_one_workflow(store: TaskStore, workflows: WorkflowStore) -> None:
    first = await create(workflows, diamond(), key="k1")
    second = await create(workflows, diamond(), key="k1")
    assert not second.created and second.started == []
    assert second.view.workflow.id == first.view.workflow.id
    other_tenant = await create(workflows, diamond(), tenant="t2", key="k1")
    assert other_tenant.created and other_tenant.view.workflow.id != first.view.workflow.id
    async with store.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(TASKS).where(TASKS.c.workflow_id == first.view.workflow.id)
        )
    assert count == 1


async def test_workflows_are_read_and_listed_per_tenant(workflows: WorkflowStore) -> None:
    mine = [(await create(workflows, [step("a")], tenant="lister")).view.workflow.id for _ in range(5)]
    await create(workflows, [step("a")], tenant="other")
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await workflows.list(tenant="lister", limit=2, cursor=cursor)
        seen += [w.id for w in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(mine))
    assert len((await workflows.list(tenant=EVERY_TENANT, limit=100)).items) == 6
    assert (await workflows.list(tenant="lister", status=WorkflowStatus.FAILED)).items == []
    view = await workflows.get(mine[0], tenant="lister")
    assert view.steps[0].name == "a" and view.steps[0].task_status is TaskStatus.PENDING
    with pytest.raises(WorkflowNotFound):
        await workflows.get(mine[0], tenant="other")


@pytest.mark.integration
async def test_two_parents_ending_at_once_start_the_child_once(
    pg_store: TaskStore, pg_workflows: WorkflowStore
) -> None:
    """Two workers finish the two parents of one step at the same moment and both advance: one start."""
    store, workflows = pg_store, pg_workflows
    runs = []
    for _ in range(10):
        created = await create(workflows, [step("left"), step("right"), step("join", "x", ["left", "right"])])
        runs.append(created)

    async def finish_and_advance(created: Advanced, name: str) -> Advanced:
        await complete(store, task_of(created, name), name, worker=name)
        return await workflows.advance(created.view.workflow.id)

    for created in runs:
        left, right, *more = await asyncio.gather(
            finish_and_advance(created, "left"),
            finish_and_advance(created, "right"),
            *(workflows.advance(created.view.workflow.id) for _ in range(4)),
        )
        started = [t for result in (left, right, *more) for t in result.started]
        assert [t.goal for t in started] == ["x"]
        async with store.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(TASKS).where(TASKS.c.workflow_id == created.view.workflow.id)
            )
        assert count == 3
