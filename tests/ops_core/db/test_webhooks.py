"""The webhook outbox on both backends: the sweep enqueues exactly once per end, every way a task
ends is covered, claims hand each due delivery to one deliverer, attempts and outcomes are recorded."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from ops_core.db.models import TASKS, WEBHOOK_DELIVERIES, WEBHOOK_DUE_WHERE, Task
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.db.webhooks import TASK_SUBJECT, Outcome, WebhookStatus, WebhookStore
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import TENANT, USAGE, make_task, running_task

URL = "https://hooks.example.com/in"
LEASE = timedelta(seconds=60)


@pytest.fixture
async def webhooks(store: TaskStore) -> AsyncIterator[WebhookStore]:
    if store.engine.dialect.name == "postgresql":
        async with store.engine.begin() as conn:
            await conn.execute(text("TRUNCATE webhook_deliveries, webhook_attempts, webhook_secrets CASCADE"))
    yield WebhookStore(store.engine, retry_for=timedelta(hours=1))


def render(task: Task) -> str:
    return json.dumps({"id": str(task.id), "status": task.status.value})


async def completed(store: TaskStore, **overrides: object) -> Task:
    claim = await running_task(store, callback_url=URL, **overrides)
    assert await store.complete(claim.task.id, claim.attempt, result={"answer": 42}, **USAGE)
    return await store.get(claim.task.id, tenant=EVERY_TENANT)


async def due_count(store: TaskStore) -> int:
    async with store.engine.connect() as conn:
        query = select(func.count()).select_from(TASKS).where(text(WEBHOOK_DUE_WHERE))
        return int(await conn.scalar(query) or 0)


async def test_a_finished_task_gets_one_delivery(store: TaskStore, webhooks: WebhookStore) -> None:
    task = await completed(store)
    assert await due_count(store) == 1

    assert await webhooks.enqueue_finished_tasks(render) == 1
    assert await webhooks.enqueue_finished_tasks(render) == 0
    assert await due_count(store) == 0, "the sweep's index is empty once the delivery is in the outbox"

    [delivery] = await webhooks.deliveries(tenant=TENANT)
    assert (delivery.subject_type, delivery.subject_id, delivery.round) == (TASK_SUBJECT, str(task.id), 0)
    assert delivery.event_type == "task.completed" and delivery.url == URL
    assert json.loads(delivery.payload) == {"id": str(task.id), "status": "completed"}
    assert delivery.status is WebhookStatus.PENDING and delivery.attempts == 0
    assert delivery.expires_at - delivery.created_at == timedelta(hours=1)
    assert delivery.webhook_id == f"msg_{delivery.id.hex}"


async def test_tasks_without_a_callback_are_never_swept(store: TaskStore, webhooks: WebhookStore) -> None:
    claim = await running_task(store)
    assert await store.complete(claim.task.id, claim.attempt, result="x", **USAGE)
    pending = await make_task(store, callback_url=URL)  # not finished: not yet
    assert await due_count(store) == 0
    assert await webhooks.enqueue_finished_tasks(render) == 0
    assert await webhooks.deliveries(tenant=EVERY_TENANT) == []
    assert (await store.get(pending.id, tenant=TENANT)).callback_url == URL


async def test_every_way_of_ending_is_swept(store: TaskStore, webhooks: WebhookStore) -> None:
    ends: dict[uuid.UUID, str] = {}

    failed = await running_task(store, callback_url=URL)
    assert await store.fail(failed.task.id, failed.attempt, error_type="tool_error", error_message="x", **USAGE)
    ends[failed.task.id] = "task.failed"

    running = await running_task(store, callback_url=URL)
    await store.request_cancel(running.task.id, tenant=TENANT)
    assert await store.finish_cancelled(running.task.id, running.attempt, **USAGE)
    ends[running.task.id] = "task.cancelled"

    pending = await make_task(store, callback_url=URL)
    await store.request_cancel(pending.id, tenant=TENANT)
    ends[pending.id] = "task.cancelled"

    unstarted = await make_task(store, callback_url=URL, schedule_to_start_seconds=1)
    assert await store.fail_unstarted(utcnow() + timedelta(seconds=5)) == [unstarted.id]
    ends[unstarted.id] = "task.failed"

    await store.register_worker("dead", "h", 1, 1)
    orphan = await running_task(store, worker="dead", callback_url=URL, max_retries=0)
    await store.deregister_worker("dead")
    assert await store.requeue_orphans(stale_after=3600) == [orphan.task.id]
    ends[orphan.task.id] = "task.failed"

    expired = await running_task(store, callback_url=URL, timeout_seconds=1)
    assert await store.fail_expired(utcnow() + timedelta(hours=1)) == [expired.task.id]
    ends[expired.task.id] = "task.failed"

    assert await webhooks.enqueue_finished_tasks(render) == len(ends)
    found = {uuid.UUID(d.subject_id): d.event_type for d in await webhooks.deliveries(tenant=TENANT)}
    assert found == ends


async def test_a_manual_retry_ends_again_and_gets_a_second_delivery(store: TaskStore, webhooks: WebhookStore) -> None:
    claim = await running_task(store, callback_url=URL)
    assert await store.fail(claim.task.id, claim.attempt, error_type="tool_error", error_message="x", **USAGE)
    assert await webhooks.enqueue_finished_tasks(render) == 1
    await store.retry(claim.task.id, tenant=TENANT)
    assert await webhooks.enqueue_finished_tasks(render) == 0, "running again: nothing to send"
    again = await store.claim(claim.task.id, "w2")
    assert again is not None
    assert await store.complete(claim.task.id, again.attempt, result="ok", **USAGE)

    assert await webhooks.enqueue_finished_tasks(render) == 1
    newest, first = await webhooks.deliveries(tenant=TENANT, subject_id=str(claim.task.id))
    assert (first.round, first.event_type) == (0, "task.failed")
    assert (newest.round, newest.event_type) == (1, "task.completed")
    assert newest.id != first.id


async def test_enqueue_for_any_record_is_once_per_subject_and_round(store: TaskStore, webhooks: WebhookStore) -> None:
    args = {
        "tenant": TENANT,
        "subject_type": "workflow",
        "subject_id": "wf-1",
        "round": 0,
        "event_type": "workflow.completed",
        "url": URL,
        "payload": "{}",
    }
    assert await webhooks.enqueue(**args)
    assert not await webhooks.enqueue(**args)
    assert await webhooks.enqueue(**{**args, "round": 1})
    async with store.engine.begin() as conn:
        assert await webhooks.enqueue(**{**args, "subject_id": "wf-2"}, conn=conn)
    assert len(await webhooks.deliveries(tenant=TENANT, subject_type="workflow")) == 3


async def test_claim_retry_and_delivery(store: TaskStore, webhooks: WebhookStore) -> None:
    await completed(store)
    await webhooks.enqueue_finished_tasks(render)
    now = utcnow()

    [claimed] = await webhooks.claim(limit=10, lease=LEASE, now=now)
    assert claimed.attempts == 1
    assert await webhooks.claim(limit=10, lease=LEASE, now=now) == [], "hidden while its POST is under way"

    retry_at = now + timedelta(seconds=5)
    failed = Outcome(started_at=now, duration_ms=3.5, status_code=503, error="HTTP 503", retry_at=retry_at)
    assert await webhooks.record(claimed, failed)
    assert await webhooks.claim(limit=10, lease=LEASE, now=now + timedelta(seconds=4)) == []
    [second] = await webhooks.claim(limit=10, lease=LEASE, now=retry_at)
    assert second.id == claimed.id and second.attempts == 2

    assert await webhooks.record(second, Outcome(started_at=retry_at, duration_ms=1.0, status_code=204, delivered=True))
    [done] = await webhooks.deliveries(tenant=TENANT)
    assert done.status is WebhookStatus.DELIVERED and done.delivered_at is not None
    assert (done.last_status_code, done.last_error) == (204, None)
    assert [(a.attempt, a.status_code, a.error) for a in done.history] == [(1, 503, "HTTP 503"), (2, 204, None)]
    assert await webhooks.claim(limit=10, lease=LEASE, now=utcnow() + timedelta(days=1)) == []


async def test_a_late_outcome_does_not_overwrite_a_later_claims(store: TaskStore, webhooks: WebhookStore) -> None:
    await completed(store)
    await webhooks.enqueue_finished_tasks(render)
    now = utcnow()
    [first] = await webhooks.claim(limit=10, lease=LEASE, now=now)
    # The first deliverer hangs past its lease; another claims the delivery again.
    [second] = await webhooks.claim(limit=10, lease=LEASE, now=now + LEASE * 2)
    assert await webhooks.record(second, Outcome(started_at=now, duration_ms=1.0, status_code=200, delivered=True))
    late = Outcome(started_at=now, duration_ms=9.0, error="ReadTimeout", retry_at=now + LEASE)
    assert not await webhooks.record(first, late)
    [done] = await webhooks.deliveries(tenant=TENANT)
    assert done.status is WebhookStatus.DELIVERED
    assert [a.attempt for a in done.history] == [1, 2], "both attempts are on record"


async def test_giving_up(store: TaskStore, webhooks: WebhookStore) -> None:
    await completed(store)
    await webhooks.enqueue_finished_tasks(render)
    [claimed] = await webhooks.claim(limit=10, lease=LEASE)
    assert await webhooks.record(claimed, Outcome(started_at=utcnow(), duration_ms=1.0, error="ConnectError"))
    [gone] = await webhooks.deliveries(tenant=TENANT, status=WebhookStatus.FAILED)
    assert gone.last_error == "ConnectError"
    assert await webhooks.claim(limit=10, lease=LEASE, now=utcnow() + timedelta(days=1)) == []


async def test_deliveries_are_per_tenant(store: TaskStore, webhooks: WebhookStore) -> None:
    await completed(store)
    await completed(store, tenant="other")
    await webhooks.enqueue_finished_tasks(render)
    assert len(await webhooks.deliveries(tenant=TENANT)) == 1
    assert len(await webhooks.deliveries(tenant="other")) == 1
    assert len(await webhooks.deliveries(tenant=EVERY_TENANT)) == 2


async def test_concurrent_sweepers_enqueue_each_end_once(store: TaskStore, webhooks: WebhookStore) -> None:
    for _ in range(30):
        await completed(store)
    await asyncio.gather(*(webhooks.enqueue_finished_tasks(render, limit=7) for _ in range(6)))
    while await webhooks.enqueue_finished_tasks(render, limit=7):
        pass
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(WEBHOOK_DELIVERIES.c.subject_id))).scalars().all()
    assert len(rows) == len(set(rows)) == 30


async def test_concurrent_deliverers_claim_each_delivery_once(store: TaskStore, webhooks: WebhookStore) -> None:
    for _ in range(40):
        await completed(store)
    await webhooks.enqueue_finished_tasks(render)
    claimed: list[uuid.UUID] = []

    async def deliverer() -> None:
        while batch := await webhooks.claim(limit=3, lease=LEASE):
            for delivery in batch:
                claimed.append(delivery.id)
                ok = Outcome(started_at=utcnow(), duration_ms=1.0, status_code=200, delivered=True)
                assert await webhooks.record(delivery, ok)

    await asyncio.gather(*(deliverer() for _ in range(6)))
    assert len(claimed) == len(set(claimed)) == 40
    delivered = await webhooks.deliveries(tenant=TENANT, status=WebhookStatus.DELIVERED)
    assert len(delivered) == 40 and all(len(d.history) == 1 for d in delivered)


async def test_a_secret_is_made_once_and_rotation_overlaps(store: TaskStore, webhooks: WebhookStore) -> None:
    first, again = await asyncio.gather(webhooks.secret(TENANT), webhooks.secret(TENANT))
    assert first.secret == again.secret and first.secret.startswith("whsec_")
    assert (await webhooks.secret("other")).secret != first.secret
    now = utcnow()
    assert first.signing_secrets(now) == [first.secret]

    rotated = await webhooks.rotate(TENANT)
    assert rotated.secret != first.secret and rotated.previous_secret == first.secret
    assert rotated.signing_secrets(now) == [rotated.secret, first.secret]
    assert rotated.signing_secrets(now + timedelta(days=2)) == [rotated.secret]
    assert (await webhooks.secret(TENANT)).secret == rotated.secret
    assert (await store.get((await make_task(store)).id, tenant=TENANT)).status is TaskStatus.PENDING


# What a claim writes (postgres.py, _claim_sql): while no index of tasks names one of these, claims stay
# HOT updates. The webhook index names only columns the end of a task and a manual retry change.
CLAIM_COLUMNS = {"status", "attempts", "last_event_seq", "started_at", "claimed_at", "worker_id", "updated_at"}


def test_the_webhook_index_keeps_claims_hot() -> None:
    [index] = [i for i in TASKS.indexes if i.name == "ix_tasks_webhook_due"]
    named = {c.name for c in index.columns} | set(
        re.findall(r"[a-z_]+", str(index.dialect_options["postgresql"]["where"]))
    )
    assert named & CLAIM_COLUMNS == set()
    assert {"callback_url", "finished_at", "webhook_round", "manual_retries"} <= named


async def test_a_sweep_that_dies_midway_leaves_every_end_to_the_next(store: TaskStore, webhooks: WebhookStore) -> None:
    for _ in range(3):
        await completed(store)
    rendered: list[uuid.UUID] = []

    def crashing(task: Task) -> str:
        rendered.append(task.id)
        if len(rendered) == 2:
            raise RuntimeError("the process died here")
        return render(task)

    with pytest.raises(RuntimeError):
        await webhooks.enqueue_finished_tasks(crashing)
    assert await webhooks.deliveries(tenant=EVERY_TENANT) == [], "nothing of the dead sweep was committed"
    assert await due_count(store) == 3
    assert await webhooks.enqueue_finished_tasks(render) == 3
