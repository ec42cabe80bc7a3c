"""The SQLite backend of the embedded default: every statement of the store in SQLAlchemy Core.

SQLite has no data-modifying CTEs, so a write and the events it brings are an
UPDATE and an INSERT in one transaction; ``BEGIN IMMEDIATE`` (see engine.py)
makes concurrent writers queue instead of failing. Events are numbered by
:func:`~ops_core.db.event_rows.add_events`, the one place this backend assigns seqs.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ops_core.db.engine import database_errors, read_only
from ops_core.db.event_rows import add_events
from ops_core.db.models import (
    EVENTS,
    TASKS,
    TENANTS,
    WORKERS,
    Claim,
    EventHead,
    FinishedCount,
    NewEvent,
    StatusChange,
    StatusCount,
    Task,
    TaskEvent,
    TaskPage,
    TaskStats,
    UsageTotal,
    WorkerView,
)
from ops_core.db.rules import (
    CLAIM,
    HELD_AT,
    REMOTE_WORKER_PREFIX,
    UNSTARTED,
    Close,
    Fenced,
    Move,
    Running,
    Usage,
    manual_retry_move,
    status_event,
    utcnow,
)
from ops_core.db.store import TaskStore, decode_cursor, not_found, page_of
from ops_core.db.types import UTCDateTime
from ops_core.domain import ErrorType, EventType
from ops_core.errors import DatabaseUnavailable
from ops_core.lifecycle import PENDING, RUNNING, WAITING, TaskStatus
from ops_core.tenancy import TenantScope, tenant_or_none

UNFINISHED = TASKS.c.finished_at.is_(None)
_RUNNING_COLUMNS = (
    TASKS.c.id.label("task_id"),
    TASKS.c.attempts.label("attempt"),
    TASKS.c.max_retries,
    TASKS.c.worker_id,
    TASKS.c.claimed_at,
    TASKS.c.timeout_seconds,
)


class SqliteStore(TaskStore):
    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with database_errors(), self.engine.begin() as conn:
            yield conn

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return read_only(self.engine)

    async def _bump(
        self,
        conn: AsyncConnection,
        task_id: uuid.UUID,
        where: Sequence[ColumnElement[bool]],
        values: Mapping[str, Any],
        events: Sequence[NewEvent],
        attempt: int | None,
        now: datetime,
        *,
        stamp: bool = False,
    ) -> Task | None:
        """One conditional UPDATE of a task and the events it brings; the task as updated, or None.

        With ``attempt`` None the events are stamped with the attempt the UPDATE leaves on the row.
        """
        stmt = (
            update(TASKS)
            .where(TASKS.c.id == task_id, *where)
            .values(last_event_seq=TASKS.c.last_event_seq + len(events), **values)
            .returning(*TASKS.c)
        )
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        task = Task.from_row(row)
        await add_events(
            conn, task.id, task.last_event_seq, task.attempts if attempt is None else attempt, events, now, stamp=stamp
        )
        return task

    # ---- submission and reads ------------------------------------------------------------------

    async def _insert(self, task: Task, event: NewEvent) -> bool:
        values = {c.name: getattr(task, c.name) for c in TASKS.c}
        # Concurrent creates with one key: the loser's INSERT waits for the winner's commit,
        # inserts nothing, and then reads the winner's row.
        stmt = (
            insert(TASKS)
            .values(values)
            .on_conflict_do_nothing(index_elements=[TASKS.c.tenant, TASKS.c.idempotency_key])
        )
        async with self._write() as conn:
            if (await conn.execute(stmt.returning(TASKS.c.id))).first() is None:
                return False
            await add_events(conn, task.id, task.last_event_seq, 0, [event], task.created_at)
        return True

    async def _by_idempotency_key(self, tenant: str, key: str) -> Task:
        stmt = select(TASKS).where(TASKS.c.tenant == tenant, TASKS.c.idempotency_key == key)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).mappings().one()
        return Task.from_row(row)

    async def get(self, task_id: uuid.UUID, *, tenant: TenantScope) -> Task:
        stmt = select(TASKS).where(TASKS.c.id == task_id, *_of_tenant(tenant))
        async with self._read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise not_found(task_id)
        return Task.from_row(row)

    async def list(
        self,
        *,
        tenant: TenantScope,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        stmt = (
            select(TASKS)
            .where(*_of_tenant(tenant))
            .order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc())
            .limit(limit + 1)
        )
        if status is not None:
            stmt = stmt.where(TASKS.c.status == TaskStatus(status).value)
        if agent is not None:
            stmt = stmt.where(TASKS.c.agent == agent)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            stmt = stmt.where(tuple_(TASKS.c.created_at, TASKS.c.id) < tuple_(created_at, last_id))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return page_of([Task.from_row(r) for r in rows], limit)

    async def list_events(
        self, task_id: uuid.UUID, *, tenant: TenantScope, after_seq: int = 0, limit: int = 1000
    ) -> builtins.list[TaskEvent]:
        stmt = (
            select(EVENTS)
            .join(TASKS, TASKS.c.id == EVENTS.c.task_id)
            .where(EVENTS.c.task_id == task_id, EVENTS.c.seq > after_seq, *_of_tenant(tenant))
            .order_by(EVENTS.c.seq)
            .limit(limit)
        )
        owned = select(TASKS.c.id).where(TASKS.c.id == task_id, *_of_tenant(tenant))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            if not rows and (await conn.execute(owned)).first() is None:
                raise not_found(task_id)
        return [TaskEvent.from_row(r) for r in rows]

    async def event_heads(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EventHead]:
        stmt = select(TASKS.c.id, TASKS.c.last_event_seq, TASKS.c.status).where(TASKS.c.id.in_(list(task_ids)))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return {row.id: EventHead(row.last_event_seq, TaskStatus(row.status)) for row in rows}

    async def last_event_id(self) -> int:
        async with self._read() as conn:
            return int((await conn.execute(select(func.coalesce(func.max(EVENTS.c.id), 0)))).scalar_one())

    async def status_changes(
        self,
        *,
        tenant: TenantScope,
        after_id: int,
        agent: str | None = None,
        status: TaskStatus | None = None,
        limit: int = 500,
    ) -> builtins.list[StatusChange]:
        stmt = (
            select(*(c for c in EVENTS.c if c.name != "type"), TASKS.c.agent)
            .join(TASKS, TASKS.c.id == EVENTS.c.task_id)
            .where(EVENTS.c.id > after_id, EVENTS.c.type == EventType.STATUS.value, *_of_tenant(tenant))
            .order_by(EVENTS.c.id)
            .limit(limit)
        )
        if agent is not None:
            stmt = stmt.where(TASKS.c.agent == agent)
        if status is not None:
            stmt = stmt.where(func.json_extract(EVENTS.c.payload, "$.to") == TaskStatus(status).value)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [StatusChange.from_row(row) for row in rows]

    async def usage(self, *, tenant: TenantScope, since: datetime) -> builtins.list[UsageTotal]:
        keys = (TASKS.c.tenant, TASKS.c.agent, TASKS.c.model)
        stmt = (
            select(
                *keys,
                func.count().label("tasks"),
                func.sum(TASKS.c.input_tokens).label("input_tokens"),
                func.sum(TASKS.c.output_tokens).label("output_tokens"),
                func.sum(TASKS.c.reused_tokens).label("reused_tokens"),
            )
            .where(TASKS.c.created_at >= since, *_of_tenant(tenant))
            .group_by(*keys)
            .order_by(*keys)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [UsageTotal(**dict(r)) for r in rows]

    async def stats(self, *, tenant: TenantScope, since: datetime, bucket_seconds: int) -> TaskStats:
        start = bindparam("since", since, type_=UTCDateTime())
        window = (TASKS.c.created_at >= start, *_of_tenant(tenant))
        lag = _seconds(TASKS.c.started_at) - _seconds(TASKS.c.created_at)
        by_status = (
            select(
                TASKS.c.status,
                func.count().label("tasks"),
                func.count(TASKS.c.started_at).label("started"),
                func.coalesce(func.sum(lag), 0.0).label("lag_sum"),
                func.coalesce(func.max(lag), 0.0).label("lag_max"),
            )
            .where(*window)
            .group_by(TASKS.c.status)
            .order_by(TASKS.c.status)
        )
        bucket = cast((_seconds(TASKS.c.finished_at) - _seconds(start)) / bucket_seconds, Integer).label("bucket")
        finished = (
            select(bucket, TASKS.c.status, func.count().label("tasks"))
            .where(*window, TASKS.c.finished_at >= start)
            .group_by(bucket, TASKS.c.status)
            .order_by(bucket, TASKS.c.status)
        )
        async with self._read() as conn:
            counts = (await conn.execute(by_status)).mappings().all()
            buckets = (await conn.execute(finished)).mappings().all()
        return TaskStats(
            by_status=[StatusCount(**{**dict(r), "status": TaskStatus(r["status"])}) for r in counts],
            finished=[FinishedCount(**{**dict(r), "status": TaskStatus(r["status"])}) for r in buckets],
        )

    # ---- the outbox ------------------------------------------------------------------------------

    async def due_for_publish(
        self, *, limit: int, now: datetime | None = None, republish_before: datetime | None = None
    ) -> builtins.list[Task]:
        stmt = (
            select(TASKS)
            .where(
                UNFINISHED,
                TASKS.c.status == PENDING.value,
                _published_before(republish_before),
                or_(TASKS.c.run_after.is_(None), TASKS.c.run_after <= (now or utcnow())),
                _has_slot(now or utcnow()),
            )
            .order_by(TASKS.c.created_at)
            .limit(limit)
        )
        async with self._read() as conn:
            return [Task.from_row(r) for r in (await conn.execute(stmt)).mappings().all()]

    async def mark_published(
        self, task_ids: Sequence[uuid.UUID], *, republished_before: datetime | None = None
    ) -> None:
        if not task_ids:
            return
        stmt = (
            update(TASKS)
            .where(
                TASKS.c.id.in_(list(task_ids)),
                TASKS.c.status == PENDING.value,
                _published_before(republished_before),
            )
            .values(published_at=utcnow())
        )
        async with self._write() as conn:
            await conn.execute(stmt)

    # ---- the worker's side ---------------------------------------------------------------------

    async def _claim(self, task_id: uuid.UUID, worker_id: str) -> Claim | None:
        now = utcnow()
        event = status_event(CLAIM, worker_id=worker_id)
        async with self._write() as conn:
            task = await self._bump(
                conn,
                task_id,
                where=[
                    TASKS.c.status == CLAIM.source.value,
                    or_(
                        TASKS.c.start_deadline.is_(None), TASKS.c.started_at.is_not(None), TASKS.c.start_deadline >= now
                    ),
                    # Checked inside the UPDATE, which holds SQLite's one write lock: no other claim interleaves.
                    _has_slot(now),
                ],
                values={
                    "status": CLAIM.to.value,
                    "attempts": TASKS.c.attempts + 1,
                    "started_at": func.coalesce(TASKS.c.started_at, now),
                    "claimed_at": now,
                    "worker_id": worker_id,
                    "updated_at": now,
                },
                events=[event],
                attempt=None,
                now=now,
                stamp=True,
            )
            if task is None:
                hold = update(TASKS).where(TASKS.c.id == task_id, TASKS.c.status == PENDING.value, _in_group())
                await conn.execute(hold.values(published_at=HELD_AT))
        return None if task is None else Claim(task, task.attempts)

    async def _fenced(self, write: Fenced, values: Mapping[str, Any]) -> bool:
        now = utcnow()
        async with self._write() as conn:
            task = await self._bump(
                conn,
                write.task_id,
                where=_owned_by(write.attempt),
                values={"updated_at": now, **values},
                events=write.events,
                attempt=write.attempt,
                now=now,
            )
        return task is not None

    async def _append(self, write: Fenced) -> bool:
        return await self._fenced(write, {})

    async def _checkpoint(self, write: Fenced) -> bool:
        return await self._fenced(write, {"checkpoint": write.checkpoint, **_added(write.usage)})

    async def _complete(self, write: Fenced) -> bool:
        values = {"status": "completed", "finished_at": utcnow(), "result": write.result, **_added(write.usage)}
        return await self._fenced(write, values)

    async def _attempt_errors(self, task_id: uuid.UUID) -> builtins.list[dict[str, Any]]:
        async with self._read() as conn:
            errors = (await conn.execute(select(TASKS.c.attempt_errors).where(TASKS.c.id == task_id))).scalar()
        return list(errors or [])

    async def _end(self, close: Close, attempt_errors: builtins.list[dict[str, Any]] | None, now: datetime) -> bool:
        values: dict[str, Any] = {
            "status": close.move.to.value,
            "updated_at": now,
            "finished_at": now if close.move.to.is_terminal else None,
            "error_type": close.error_type,
            "error_message": close.error_message,
            "run_after": close.run_after,
            "attempts": TASKS.c.attempts - (1 if close.refund_attempt else 0),
            **_added(close.usage),
        }
        if attempt_errors is not None:
            values["attempt_errors"] = attempt_errors
        if close.move.to is PENDING:
            values["published_at"] = None
        async with self._write() as conn:
            task = await self._bump(
                conn,
                close.task_id,
                where=_owned_by(close.attempt),
                values=values,
                events=close.all_events(),
                attempt=close.attempt,
                now=now,
            )
        return task is not None

    # ---- operator actions ------------------------------------------------------------------------

    async def _cancel_unclaimed(self, task_id: uuid.UUID, move: Move, message: str, now: datetime) -> Task | None:
        values = {
            "status": move.to.value,
            "error_type": ErrorType.CANCELLED.value,
            "error_message": message,
            "finished_at": now,
            "updated_at": now,
        }
        where = [TASKS.c.status == move.source.value]
        async with self._write() as conn:
            return await self._bump(conn, task_id, where, values, [status_event(move)], None, now)

    async def _flag_cancel(self, task_id: uuid.UUID, now: datetime) -> Task | None:
        where = [TASKS.c.status == RUNNING.value, TASKS.c.cancel_requested.is_(False)]
        event = NewEvent(EventType.CANCEL_REQUESTED.value, {})
        async with self._write() as conn:
            return await self._bump(
                conn, task_id, where, {"cancel_requested": True, "updated_at": now}, [event], None, now
            )

    async def cancel_requested(self, task_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not task_ids:
            return set()
        stmt = select(TASKS.c.id).where(
            TASKS.c.id.in_(list(task_ids)), TASKS.c.status == RUNNING.value, TASKS.c.cancel_requested.is_(True)
        )
        async with self._read() as conn:
            return set((await conn.execute(stmt)).scalars())

    async def _reopen(self, task: Task, now: datetime) -> Task | None:
        move = manual_retry_move(task.status)
        max_retries, retry_base = self.policy.renewed_budget(
            attempts=task.attempts, max_retries=task.max_retries, retry_base=task.retry_base
        )
        deadline = None
        if task.schedule_to_start_seconds is not None:
            deadline = now + timedelta(seconds=task.schedule_to_start_seconds)
        values = {
            "status": move.to.value,
            "published_at": None,
            "run_after": None,
            "cancel_requested": False,
            "error_type": None,
            "error_message": None,
            "result": None,
            "finished_at": None,
            "start_deadline": deadline,
            "max_retries": max_retries,
            "retry_base": retry_base,
            "manual_retries": TASKS.c.manual_retries + 1,
            "updated_at": now,
        }
        where = [
            TASKS.c.status == move.source.value,
            TASKS.c.attempts == task.attempts,
            TASKS.c.manual_retries == task.manual_retries,
        ]
        async with self._write() as conn:
            return await self._bump(conn, task.id, where, values, [status_event(move)], None, now)

    # ---- crash recovery ----------------------------------------------------------------------------

    async def _orphans(self, cutoff: datetime, caller: str | None) -> builtins.list[Running]:
        stmt = (
            select(*_RUNNING_COLUMNS)
            .select_from(TASKS.outerjoin(WORKERS, WORKERS.c.id == TASKS.c.worker_id))
            .where(
                UNFINISHED,
                TASKS.c.status == RUNNING.value,
                or_(
                    WORKERS.c.stopped_at.is_not(None),
                    WORKERS.c.last_heartbeat < cutoff,
                    # An unknown worker gets the same grace, measured from its claim.
                    and_(WORKERS.c.id.is_(None), or_(TASKS.c.claimed_at.is_(None), TASKS.c.claimed_at < cutoff)),
                ),
                TASKS.c.worker_id.is_distinct_from(caller),
                # A remote agent's attempt: its lease is db/remote.py's, not a worker's heartbeat.
                ~func.coalesce(TASKS.c.worker_id, "").startswith(REMOTE_WORKER_PREFIX),
            )
            .order_by(TASKS.c.id)
        )
        async with self._read() as conn:
            return [Running(**row) for row in (await conn.execute(stmt)).mappings()]

    async def _running(self) -> builtins.list[Running]:
        stmt = select(*_RUNNING_COLUMNS).where(UNFINISHED, TASKS.c.status == RUNNING.value).order_by(TASKS.c.id)
        async with self._read() as conn:
            return [Running(**row) for row in (await conn.execute(stmt)).mappings()]

    async def _unstarted(self, now: datetime) -> builtins.list[uuid.UUID]:
        stmt = (
            select(TASKS.c.id)
            .where(
                UNFINISHED, TASKS.c.status == PENDING.value, TASKS.c.started_at.is_(None), TASKS.c.start_deadline < now
            )
            .order_by(TASKS.c.id)
        )
        async with self._read() as conn:
            return list((await conn.execute(stmt)).scalars())

    async def _fail_unstarted(self, task_ids: Sequence[uuid.UUID], now: datetime) -> builtins.list[uuid.UUID]:
        reason = ErrorType.SCHEDULE_TO_START_TIMEOUT.value
        values = {
            "status": UNSTARTED.to.value,
            "error_type": reason,
            "error_message": "the task waited longer than its schedule-to-start timeout",
            "finished_at": now,
            "updated_at": now,
        }
        where = [TASKS.c.status == UNSTARTED.source.value, TASKS.c.started_at.is_(None), TASKS.c.start_deadline < now]
        failed: builtins.list[uuid.UUID] = []
        for task_id in sorted(task_ids):
            async with self._write() as conn:
                event = status_event(UNSTARTED, error_type=reason)
                if await self._bump(conn, task_id, where, values, [event], 0, now) is not None:
                    failed.append(task_id)
        return failed

    # ---- the worker registry -----------------------------------------------------------------------

    async def ping(self) -> None:
        async with self._read() as conn:
            if (await conn.execute(text("SELECT 1"))).scalar() != 1:  # pragma: no cover - defensive
                raise DatabaseUnavailable("database answered SELECT 1 wrongly")

    async def register_worker(self, worker_id: str, host: str, pid: int, concurrency: int) -> None:
        now = utcnow()
        values = {"host": host, "pid": pid, "concurrency": concurrency, "started_at": now, "last_heartbeat": now}
        stmt = insert(WORKERS).values(id=worker_id, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[WORKERS.c.id], set_={**values, "stopped_at": None})
        async with self._write() as conn:
            await conn.execute(stmt)

    async def heartbeat(self, worker_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(update(WORKERS).where(WORKERS.c.id == worker_id).values(last_heartbeat=utcnow()))

    async def deregister_worker(self, worker_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(update(WORKERS).where(WORKERS.c.id == worker_id).values(stopped_at=utcnow()))

    async def live_workers(self, *, stale_after: float) -> builtins.list[WorkerView]:
        cutoff = utcnow() - timedelta(seconds=stale_after)
        live = select(WORKERS).where(WORKERS.c.stopped_at.is_(None), WORKERS.c.last_heartbeat >= cutoff)
        async with self._read() as conn:
            workers = (await conn.execute(live.order_by(WORKERS.c.started_at))).mappings().all()
            running: dict[str, builtins.list[uuid.UUID]] = {w["id"]: [] for w in workers}
            if running:
                rows = await conn.execute(
                    select(TASKS.c.worker_id, TASKS.c.id)
                    .where(UNFINISHED, TASKS.c.status == RUNNING.value, TASKS.c.worker_id.in_(list(running)))
                    .order_by(TASKS.c.id)
                )
                for worker_id, task_id in rows:
                    running[worker_id].append(task_id)
        return [
            WorkerView(
                id=w["id"],
                host=w["host"],
                pid=w["pid"],
                concurrency=w["concurrency"],
                started_at=w["started_at"],
                last_heartbeat=w["last_heartbeat"],
                running_task_ids=running[w["id"]],
            )
            for w in workers
        ]


_LIMITED = select(TENANTS.c.id).where(TENANTS.c.max_running.is_not(None))


def _in_group() -> ColumnElement[bool]:
    """The task is in a group: its tenant has a running limit, or it has a concurrency key (rules.py, slots)."""
    return or_(TASKS.c.tenant.in_(_LIMITED), TASKS.c.concurrency_key.is_not(None))


def _active_ahead(other: FromClause, of: FromClause, now: datetime) -> ColumnElement[bool]:
    """``other`` is running, or pending, due and older than ``of``."""
    return and_(
        other.c.finished_at.is_(None),
        or_(
            other.c.status == RUNNING.value,
            and_(
                other.c.status == PENDING.value,
                tuple_(other.c.created_at, other.c.id) < tuple_(of.c.created_at, of.c.id),
                or_(other.c.run_after.is_(None), other.c.run_after <= now),
            ),
        ),
    )


def _key_ahead(other: FromClause, of: FromClause, now: datetime) -> ColumnElement[bool]:
    """``other``, of ``of``'s key, takes a place ahead of it: as :func:`_active_ahead`, and for a
    session's key (rules.py, slots: strict keys) also when waiting, or pending and not yet due."""
    strict = other.c.session_id.is_not(None)
    return and_(
        other.c.finished_at.is_(None),
        or_(
            other.c.status == RUNNING.value,
            and_(strict, other.c.status == WAITING.value),
            and_(
                other.c.status == PENDING.value,
                tuple_(other.c.created_at, other.c.id) < tuple_(of.c.created_at, of.c.id),
                or_(strict, other.c.run_after.is_(None), other.c.run_after <= now),
            ),
        ),
    )


def _key_free(task: FromClause, now: datetime, name: str) -> ColumnElement[bool]:
    """``task`` is keyless, or key-eligible: its key's running tasks plus its older pending due ones
    number fewer than its limit. ``name`` names the subquery's alias (one per nesting level)."""
    other = TASKS.alias(name)
    ahead = (
        select(func.count())
        .select_from(other)
        .where(
            other.c.tenant == task.c.tenant,
            other.c.concurrency_key == task.c.concurrency_key,
            _key_ahead(other, task, now),
        )
        .scalar_subquery()
    )
    return or_(task.c.concurrency_key.is_(None), ahead < task.c.concurrency_limit)


def _has_slot(now: datetime) -> ColumnElement[bool]:
    """Each of the task's groups has a slot for it (rules.py, slots): the claim's and the relay's check."""
    limit = select(TENANTS.c.max_running).where(TENANTS.c.id == TASKS.c.tenant).scalar_subquery()
    other = TASKS.alias("other")
    # The tenant's running tasks, plus its older pending due ones that their key does not block.
    ahead = (
        select(func.count())
        .select_from(other)
        .where(
            other.c.tenant == TASKS.c.tenant,
            _active_ahead(other, TASKS, now),
            or_(other.c.status == RUNNING.value, _key_free(other, now, "other_key")),
        )
        .scalar_subquery()
    )
    # The key first: it is cheap (ix_tasks_concurrency_key), and when it blocks the tenant's count is moot.
    return and_(_key_free(TASKS, now, "key_other"), or_(TASKS.c.tenant.not_in(_LIMITED), ahead < limit))


def _of_tenant(scope: TenantScope) -> builtins.list[ColumnElement[bool]]:
    tenant = tenant_or_none(scope)
    return [] if tenant is None else [TASKS.c.tenant == tenant]


def _owned_by(attempt: int) -> builtins.list[ColumnElement[bool]]:
    return [TASKS.c.status == RUNNING.value, TASKS.c.attempts == attempt]


def _added(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": TASKS.c.input_tokens + usage.input_tokens,
        "output_tokens": TASKS.c.output_tokens + usage.output_tokens,
        "reused_tokens": TASKS.c.reused_tokens + usage.reused_tokens,
    }


def _published_before(when: datetime | None) -> ColumnElement[bool]:
    unpublished = TASKS.c.published_at.is_(None)
    return unpublished if when is None else or_(unpublished, TASKS.c.published_at < when)


def _seconds(moment: ColumnElement[Any]) -> ColumnElement[float]:
    """A stored timestamp (naive UTC text) as seconds since the epoch, fractions kept."""
    return (func.julianday(moment) - 2440587.5) * 86400.0
