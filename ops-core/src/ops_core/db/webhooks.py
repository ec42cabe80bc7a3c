"""Completion webhooks: the delivery outbox, its attempts, and each tenant's signing secret.

**How a delivery gets into the outbox.** Not on the completion path. Ending a
task is the system's hottest write (group-committed fenced UPDATEs, see
postgres.py), and a task without a ``callback_url`` must pay nothing for this
feature; adding an outbox INSERT to those statements would cost every task a
CTE, and would have to be repeated in each of the six ways a task ends
(complete, fail, cancel while running, cancel unclaimed, schedule-to-start
expiry, the reaper's recovery) in both backends. Instead a **sweep**
(:meth:`WebhookStore.enqueue_finished_tasks`, run by every worker's webhook
duty) reads the partial index ``ix_tasks_webhook_due``: finished tasks with a
callback_url whose current terminal state has no delivery yet. In one
transaction it inserts the delivery and sets ``tasks.webhook_round`` to the
task's ``manual_retries``, which takes the task out of the index. So:

* *every* way of ending is covered, present and future, since all set ``finished_at``;
* **exactly once per terminal state**: a terminal state is named by
  ``(task id, manual_retries)`` (only a manual retry leaves a terminal state,
  and it bumps ``manual_retries``), which is the delivery's unique key, and
  the marker moves in the same transaction as the insert;
* **crash-safe**: until that transaction commits, the task stays in the index
  and the next sweep (any worker's) picks it up; on PostgreSQL the sweep takes
  the rows ``FOR UPDATE SKIP LOCKED`` so concurrent sweepers split the work;
* the price is latency: a webhook leaves up to ``OPSCORE_WEBHOOK_POLL_SECONDS`` after the end.

**For other records (workflows, schedules).** :meth:`WebhookStore.enqueue` puts
one delivery for any record into the outbox: pass the tenant, a subject type
and id, a ``round`` that names which end of the subject this is, the event
type, the URL and the JSON body. A second call with the same
``(subject_type, subject_id, round)`` is a no-op (False), so it is safe to call
again after a crash. Pass ``conn`` to enqueue inside your own transaction (the
one that makes the record terminal): the delivery then exists if and only if
the end does. Check the URL at submission with :func:`ops_core.callback_urls.check`.

**Delivering.** :meth:`WebhookStore.claim` takes due deliveries (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL; SQLite has one writer), counts the attempt and
pushes ``next_attempt_at`` past a lease, so a deliverer that dies mid-POST
leaves the delivery to be retried after the lease, with the same
``webhook-id``. :meth:`WebhookStore.record` stores the attempt and, fenced on
the attempt number, the outcome: delivered, retry at a time, or given up.

Every statement is SQLAlchemy Core, one set for both backends, as in approvals.py.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ops_core.config import Settings
from ops_core.db.engine import database_errors, read_only
from ops_core.db.models import (
    TASKS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_DUE_WHERE,
    WEBHOOK_SECRETS,
    Task,
)
from ops_core.db.rules import utcnow
from ops_core.signing import new_secret
from ops_core.tenancy import TenantScope, tenant_or_none


class WebhookStatus(StrEnum):
    """Where a delivery stands: pending until the receiver answers 2xx, or until it is given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


TASK_SUBJECT = "task"
WORKFLOW_SUBJECT = "workflow"
# After a rotation the previous secret signs too, for this long, so receivers can switch over.
ROTATION_OVERLAP = timedelta(hours=24)
SWEEP_BATCH = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookAttempt:
    """A row of ``webhook_attempts``: one POST."""

    delivery_id: uuid.UUID
    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WebhookAttempt:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDelivery:
    """A row of ``webhook_deliveries``; ``id`` is the ``webhook-id`` every attempt carries."""

    id: uuid.UUID
    tenant: str
    subject_type: str
    subject_id: str
    round: int
    event_type: str
    url: str
    payload: str
    status: WebhookStatus
    attempts: int
    next_attempt_at: datetime
    expires_at: datetime
    created_at: datetime
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    history: list[WebhookAttempt] = field(default_factory=list)

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WebhookDelivery:
        values = {f.name: row[f.name] for f in fields(cls) if f.name != "history"}
        values["status"] = WebhookStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSecret:
    tenant: str
    secret: str
    created_at: datetime
    rotated_at: datetime | None = None
    previous_secret: str | None = None
    previous_until: datetime | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, then the previous one while a rotation overlaps."""
        if self.previous_secret is not None and self.previous_until is not None and now < self.previous_until:
            return [self.secret, self.previous_secret]
        return [self.secret]

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WebhookSecret:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one attempt came to; ``retry_at`` None with ``delivered`` False: given up."""

    started_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None
    delivered: bool = False
    retry_at: datetime | None = None


class WebhookStore:
    def __init__(self, engine: AsyncEngine, *, retry_for: timedelta) -> None:
        self.engine = engine
        self.retry_for = retry_for
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert

    @classmethod
    def from_settings(cls, engine: AsyncEngine, settings: Settings) -> WebhookStore:
        return cls(engine, retry_for=timedelta(hours=settings.webhook_retry_hours))

    # ---- the outbox ------------------------------------------------------------------------------

    async def enqueue(
        self,
        *,
        tenant: str,
        subject_type: str,
        subject_id: str,
        round: int,
        event_type: str,
        url: str,
        payload: str,
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Put one delivery of ``payload`` (JSON text) to ``url`` in the outbox; False if this
        ``(subject_type, subject_id, round)`` already has one. See the module docstring."""
        if conn is not None:
            return await self._enqueue(conn, tenant, subject_type, subject_id, round, event_type, url, payload)
        async with database_errors(), self.engine.begin() as own:
            return await self._enqueue(own, tenant, subject_type, subject_id, round, event_type, url, payload)

    async def _enqueue(
        self,
        conn: AsyncConnection,
        tenant: str,
        subject_type: str,
        subject_id: str,
        round: int,
        event_type: str,
        url: str,
        payload: str,
    ) -> bool:
        now = utcnow()
        stmt = (
            self._insert(WEBHOOK_DELIVERIES)
            .values(
                id=uuid.uuid4(),
                tenant=tenant,
                subject_type=subject_type,
                subject_id=subject_id,
                round=round,
                event_type=event_type,
                url=url,
                payload=payload,
                status=WebhookStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                expires_at=now + self.retry_for,
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[
                    WEBHOOK_DELIVERIES.c.subject_type,
                    WEBHOOK_DELIVERIES.c.subject_id,
                    WEBHOOK_DELIVERIES.c.round,
                ]
            )
            .returning(WEBHOOK_DELIVERIES.c.id)
        )
        return (await conn.execute(stmt)).first() is not None

    async def enqueue_finished_tasks(self, render: Callable[[Task], str], *, limit: int = SWEEP_BATCH) -> int:
        """The sweep: a delivery for each finished task with a callback_url whose end has none yet
        (``render`` makes the body from the task); how many it enqueued."""
        due = select(TASKS).where(text(WEBHOOK_DUE_WHERE)).order_by(TASKS.c.finished_at).limit(limit)
        if self._postgres:
            due = due.with_for_update(skip_locked=True)
        enqueued = 0
        async with database_errors(), self.engine.begin() as conn:
            for row in (await conn.execute(due)).mappings().all():
                task = Task.from_row(row)
                assert task.callback_url is not None
                if await self._enqueue(
                    conn,
                    task.tenant,
                    TASK_SUBJECT,
                    str(task.id),
                    task.manual_retries,
                    f"task.{task.status.value}",
                    task.callback_url,
                    render(task),
                ):
                    enqueued += 1
                await conn.execute(
                    update(TASKS)
                    .where(TASKS.c.id == task.id, TASKS.c.manual_retries == task.manual_retries)
                    .values(webhook_round=task.manual_retries)
                )
        return enqueued

    async def claim(
        self, *, limit: int, lease: timedelta, now: datetime | None = None
    ) -> builtins.list[WebhookDelivery]:
        """Due pending deliveries, each with its attempt counted and hidden from other deliverers for ``lease``."""
        now = now or utcnow()
        d = WEBHOOK_DELIVERIES
        due = (
            select(d.c.id)
            .where(d.c.status == WebhookStatus.PENDING.value, d.c.next_attempt_at <= now)
            .order_by(d.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(d)
            # Checked again on the row itself: a claim that waited for another's lock sees it moved on.
            .where(
                d.c.id.in_(due.scalar_subquery()),
                d.c.status == WebhookStatus.PENDING.value,
                d.c.next_attempt_at <= now,
            )
            .values(attempts=d.c.attempts + 1, next_attempt_at=now + lease)
            .returning(*d.c)
        )
        async with database_errors(), self.engine.begin() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return sorted((WebhookDelivery.from_row(row) for row in rows), key=lambda x: x.created_at)

    async def record(self, delivery: WebhookDelivery, outcome: Outcome) -> bool:
        """Store attempt ``delivery.attempts`` and its outcome; False if a later claim took the delivery
        meanwhile (the attempt is still recorded, the later claim decides the outcome)."""
        d = WEBHOOK_DELIVERIES
        values: dict[str, Any] = {"last_status_code": outcome.status_code, "last_error": outcome.error}
        if outcome.delivered:
            values.update(status=WebhookStatus.DELIVERED.value, delivered_at=utcnow())
        elif outcome.retry_at is None:
            values.update(status=WebhookStatus.FAILED.value)
        else:
            values.update(next_attempt_at=outcome.retry_at)
        attempt = self._insert(WEBHOOK_ATTEMPTS).values(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            error=outcome.error,
        )
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(attempt.on_conflict_do_nothing())
            moved = await conn.execute(
                update(d)
                .where(
                    d.c.id == delivery.id,
                    d.c.attempts == delivery.attempts,
                    d.c.status == WebhookStatus.PENDING.value,
                )
                .values(**values)
                .returning(d.c.id)
            )
            return moved.first() is not None

    # ---- reads -------------------------------------------------------------------------------------

    async def deliveries(
        self,
        *,
        tenant: TenantScope,
        subject_type: str | None = None,
        subject_id: str | None = None,
        status: WebhookStatus | None = None,
        limit: int = 100,
    ) -> builtins.list[WebhookDelivery]:
        """Newest first, each with its attempts (oldest first)."""
        d = WEBHOOK_DELIVERIES
        stmt = select(d)
        if (scoped := tenant_or_none(tenant)) is not None:
            stmt = stmt.where(d.c.tenant == scoped)
        if subject_type is not None:
            stmt = stmt.where(d.c.subject_type == subject_type)
        if subject_id is not None:
            stmt = stmt.where(d.c.subject_id == subject_id)
        if status is not None:
            stmt = stmt.where(d.c.status == status.value)
        stmt = stmt.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit)
        async with self._read() as conn:
            found = [WebhookDelivery.from_row(row) for row in (await conn.execute(stmt)).mappings()]
            history = await self._attempts(conn, [x.id for x in found])
        for delivery in found:
            delivery.history.extend(history.get(delivery.id, []))
        return found

    async def _attempts(
        self, conn: AsyncConnection, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, builtins.list[WebhookAttempt]]:
        if not ids:
            return {}
        a = WEBHOOK_ATTEMPTS
        stmt = select(a).where(a.c.delivery_id.in_(ids)).order_by(a.c.delivery_id, a.c.attempt)
        grouped: dict[uuid.UUID, builtins.list[WebhookAttempt]] = {}
        for row in (await conn.execute(stmt)).mappings():
            grouped.setdefault(row["delivery_id"], []).append(WebhookAttempt.from_row(row))
        return grouped

    # ---- secrets -----------------------------------------------------------------------------------

    async def secret(self, tenant: str) -> WebhookSecret:
        """The tenant's signing secret, made on first use."""
        async with self._read() as conn:
            row = (await conn.execute(select(WEBHOOK_SECRETS).where(WEBHOOK_SECRETS.c.tenant == tenant))).mappings()
            found = row.first()
        if found is not None:
            return WebhookSecret.from_row(found)
        stmt = self._insert(WEBHOOK_SECRETS).values(tenant=tenant, secret=new_secret(), created_at=utcnow())
        async with database_errors(), self.engine.begin() as conn:
            # Two first uses at once: one secret wins and both read it.
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=[WEBHOOK_SECRETS.c.tenant]))
            made = (await conn.execute(select(WEBHOOK_SECRETS).where(WEBHOOK_SECRETS.c.tenant == tenant))).mappings()
            return WebhookSecret.from_row(made.one())

    async def rotate(self, tenant: str) -> WebhookSecret:
        """A new secret for ``tenant``; the old one keeps signing alongside for :data:`ROTATION_OVERLAP`."""
        current = await self.secret(tenant)
        now = utcnow()
        s = WEBHOOK_SECRETS
        stmt = (
            update(s)
            .where(s.c.tenant == tenant)
            .values(
                secret=new_secret(),
                previous_secret=s.c.secret,
                previous_until=now + ROTATION_OVERLAP,
                rotated_at=now,
            )
            .returning(*s.c)
        )
        async with database_errors(), self.engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return current if row is None else WebhookSecret.from_row(row)

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return read_only(self.engine)
