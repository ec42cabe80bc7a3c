"""A workflow's completion webhook on both backends: one delivery in the outbox, written in the
transaction that makes the workflow final (ended, no step still running), whatever ended it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from ops_core.api.workflow_schemas import render_workflow
from ops_core.db.store import TaskStore
from ops_core.db.webhooks import WORKFLOW_SUBJECT, WebhookDelivery, WebhookStore
from ops_core.db.workflows import Advanced, EndWebhooks, NewStep, NewWorkflow, WorkflowStore, WorkflowView
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import TENANT
from tests.ops_core.db.test_workflows import complete, fail, statuses, step, task_of

URL = "https://hooks.example.com/workflows"


class Render:
    """The body: the workflow's status and each step's, so a test sees which state was sent."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, view: WorkflowView) -> str:
        if self.broken:
            raise RuntimeError("rendering failed")
        return json.dumps({"id": str(view.workflow.id), "status": view.workflow.status.value}) + json.dumps(
            {s.name: s.status.value for s in view.steps}
        )


@pytest.fixture
async def outbox(store: TaskStore) -> AsyncIterator[WebhookStore]:
    if store.engine.dialect.name == "postgresql":
        async with store.engine.begin() as conn:
            await conn.execute(text("TRUNCATE workflows, webhook_deliveries, webhook_attempts CASCADE"))
    yield WebhookStore(store.engine, retry_for=timedelta(hours=1))


@pytest.fixture
def render() -> Render:
    return Render()


@pytest.fixture
def workflows(store: TaskStore, outbox: WebhookStore, render: Render) -> WorkflowStore:
    return WorkflowStore(store.engine, webhooks=EndWebhooks(outbox, render))


async def create(workflows: WorkflowStore, steps: list[NewStep], callback_url: str | None = URL) -> Advanced:
    new = NewWorkflow(tenant=TENANT, steps=steps, request={"n": len(steps)}, callback_url=callback_url)
    return await workflows.create(new)


async def sent(outbox: WebhookStore, workflow_id: uuid.UUID) -> list[WebhookDelivery]:
    return await outbox.deliveries(tenant=EVERY_TENANT, subject_type=WORKFLOW_SUBJECT, subject_id=str(workflow_id))


def body(delivery: WebhookDelivery) -> tuple[dict[str, str], dict[str, str]]:
    head, _, steps = delivery.payload.partition("}{")
    return json.loads(head + "}"), json.loads("{" + steps)


async def test_a_completed_workflow_gets_one_delivery_of_its_final_record(
    store: TaskStore, workflows: WorkflowStore, outbox: WebhookStore
) -> None:
    created = await create(workflows, [step("a"), step("b", "after {{steps.a.result}}", ["a"])])
    workflow_id = created.view.workflow.id
    assert created.view.workflow.callback_url == URL
    await complete(store, task_of(created, "a"), "A")
    middle = await workflows.advance(workflow_id)
    assert await sent(outbox, workflow_id) == [], "nothing is sent while the workflow runs"
    await complete(store, task_of(middle, "b"), "B")
    assert (await workflows.advance(workflow_id)).view.workflow.status == "completed"
    [delivery] = await sent(outbox, workflow_id)
    assert (delivery.tenant, delivery.round, delivery.url) == (TENANT, 0, URL)
    assert (delivery.event_type, delivery.status) == ("workflow.completed", "pending")
    assert body(delivery) == ({"id": str(workflow_id), "status": "completed"}, {"a": "completed", "b": "completed"})
    # Advancing an ended workflow again (the sweep, a late worker) sends nothing more.
    await workflows.advance(workflow_id)
    assert len(await sent(outbox, workflow_id)) == 1


async def test_a_workflow_without_a_callback_url_sends_nothing(
    store: TaskStore, workflows: WorkflowStore, outbox: WebhookStore
) -> None:
    created = await create(workflows, [step("a")], callback_url=None)
    await complete(store, task_of(created, "a"), "A")
    assert (await workflows.advance(created.view.workflow.id)).view.workflow.status == "completed"
    assert await outbox.deliveries(tenant=EVERY_TENANT) == []


async def test_a_failed_workflow_is_sent_once_its_running_steps_settled(
    store: TaskStore, workflows: WorkflowStore, outbox: WebhookStore
) -> None:
    created = await create(workflows, [step("a"), step("side"), step("after", "x", ["a"])])
    workflow_id = created.view.workflow.id
    await fail(store, task_of(created, "a"), "the model refused")
    failed = await workflows.advance(workflow_id)
    assert failed.view.workflow.status == "failed" and statuses(failed)["side"] == "started"
    assert await sent(outbox, workflow_id) == [], "a step still runs: the record is not final yet"
    await store.request_cancel(task_of(created, "side"), tenant=EVERY_TENANT)
    await workflows.advance(workflow_id)
    [delivery] = await sent(outbox, workflow_id)
    assert delivery.event_type == "workflow.failed"
    assert body(delivery)[1] == {"a": "failed", "side": "cancelled", "after": "skipped"}


async def test_a_failure_with_nothing_else_running_is_sent_in_the_same_advance(
    store: TaskStore, workflows: WorkflowStore, outbox: WebhookStore
) -> None:
    created = await create(workflows, [step("a"), step("after", "x", ["a"])])
    await fail(store, task_of(created, "a"))
    assert (await workflows.advance(created.view.workflow.id)).view.workflow.status == "failed"
    [delivery] = await sent(outbox, created.view.workflow.id)
    assert delivery.event_type == "workflow.failed" and body(delivery)[1] == {"a": "failed", "after": "skipped"}


async def test_a_cancelled_workflow_is_sent_once_its_steps_settled(
    store: TaskStore, workflows: WorkflowStore, outbox: WebhookStore
) -> None:
    created = await create(workflows, [step("a"), step("b", "x", ["a"])])
    workflow_id = created.view.workflow.id
    cancelled = await workflows.cancel(workflow_id, tenant=TENANT)
    assert cancelled.view.workflow.status == "cancelled" and await sent(outbox, workflow_id) == []
    await store.request_cancel(task_of(created, "a"), tenant=EVERY_TENANT)
    await workflows.advance(workflow_id)
    [delivery] = await sent(outbox, workflow_id)
    assert delivery.event_type == "workflow.cancelled"
    assert body(delivery) == ({"id": str(workflow_id), "status": "cancelled"}, {"a": "cancelled", "b": "skipped"})


async def test_the_delivery_commits_with_the_end_or_not_at_all(
    store: TaskStore, workflows: WorkflowStore, outbox: WebhookStore, render: Render
) -> None:
    created = await create(workflows, [step("a")])
    workflow_id = created.view.workflow.id
    await complete(store, task_of(created, "a"), "A")
    render.broken = True  # the advance dies after it moved the workflow, before it committed
    with pytest.raises(RuntimeError, match="rendering failed"):
        await workflows.advance(workflow_id)
    assert (await workflows.get(workflow_id, tenant=TENANT)).workflow.status == "running"
    assert await sent(outbox, workflow_id) == []
    assert await workflows.due() == [workflow_id], "the sweep will finish it"
    render.broken = False
    assert (await workflows.advance(workflow_id)).view.workflow.status == "completed"
    assert [d.event_type for d in await sent(outbox, workflow_id)] == ["workflow.completed"]


async def test_advances_at_the_same_moment_enqueue_once(
    store: TaskStore, workflows: WorkflowStore, outbox: WebhookStore
) -> None:
    created = await create(workflows, [step("a"), step("b")])
    workflow_id = created.view.workflow.id
    await complete(store, task_of(created, "a"), "A")
    await complete(store, task_of(created, "b"), "B")
    ends = await asyncio.gather(*(workflows.advance(workflow_id) for _ in range(4)))
    assert {e.view.workflow.status for e in ends} == {"completed"}
    assert len(await sent(outbox, workflow_id)) == 1


async def test_a_store_without_an_outbox_refuses_a_callback_url(store: TaskStore, outbox: WebhookStore) -> None:
    bare = WorkflowStore(store.engine)
    with pytest.raises(ValueError, match="without webhooks"):
        await create(bare, [step("a")])
    assert (await bare.list(tenant=EVERY_TENANT)).items == []


async def test_the_record_sent_is_the_one_read_afterwards(
    store: TaskStore, outbox: WebhookStore, workflows: WorkflowStore
) -> None:
    real = WorkflowStore(store.engine, webhooks=EndWebhooks(outbox, render_workflow))
    created = await create(real, [step("a"), step("b", "x", ["a"])])
    workflow_id = created.view.workflow.id
    await complete(store, task_of(created, "a"), "A")
    started = await real.advance(workflow_id)
    await complete(store, task_of(started, "b"), {"B": 1})
    await real.advance(workflow_id)
    # Later advances that find nothing to do (a sweep, a late worker) leave the record alone.
    await real.advance(workflow_id)
    await real.advance(workflow_id)
    [delivery] = await sent(outbox, workflow_id)
    assert delivery.payload == render_workflow(await real.get(workflow_id, tenant=TENANT))
    assert json.loads(delivery.payload)["status"] == "completed"
