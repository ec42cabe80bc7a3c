"""The task store: every task state change is one conditional UPDATE plus its events, in one transaction.

Hot-path cost per task: ``claim`` and ``complete``, each one statement (the
UPDATE and its event INSERT in a CTE). On PostgreSQL the claims, event
appends, checkpoints and completions that arrive together share a statement.
Worker-owned writes are fenced by ``status = 'running' AND attempts =
<attempt>``, so a zombie from an earlier attempt can never write.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from ops_core.db import fastpath
from ops_core.db._base import (
    EVENTS,
    OTHER_TASK_COLUMNS,
    TASKS,
    UNFINISHED,
    StoreBase,
    attempt_error,
    status_event,
    to_event,
    to_task,
    utcnow,
)
from ops_core.db.batch import Batcher
from ops_core.db.cancel import CancelOps
from ops_core.db.engine import database_errors, json_dumps
from ops_core.db.models import Claim, NewEvent, NewTask, Task, TaskEvent, TaskPage
from ops_core.db.outbox import OutboxOps
from ops_core.db.workers import WorkerOps
from ops_core.domain import ErrorType, EventType
from ops_core.errors import InvalidRequest, LeaseLost, TaskNotFound
from ops_core.lifecycle import TaskStatus

PENDING, RUNNING = TaskStatus.PENDING, TaskStatus.RUNNING


class TaskStore(OutboxOps, CancelOps, WorkerOps, StoreBase):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # The statements every task runs go out in batches under load (PostgreSQL only).
        self._claims = Batcher(partial(fastpath.claim, engine))
        self._appends = Batcher(partial(fastpath.fenced, engine, fastpath.APPEND))
        self._checkpoints = Batcher(partial(fastpath.fenced, engine, fastpath.CHECKPOINT))
        self._completions = Batcher(partial(fastpath.fenced, engine, fastpath.COMPLETE))

    # ---- submission and reads -------------------------------------------------

    async def create(self, new: NewTask) -> tuple[Task, bool]:
        """Insert a pending task; with a known idempotency key return the existing task instead."""
        now = utcnow()
        deadline = None
        if new.schedule_to_start_seconds is not None:
            deadline = now + timedelta(seconds=new.schedule_to_start_seconds)
        values = {
            "id": uuid.uuid4(),
            "agent": new.agent,
            "goal": new.goal,
            "input": new.input,
            "model": new.model,
            "status": PENDING.value,
            "attempts": 0,
            "max_retries": new.max_retries,
            "retry_base": 0,
            "timeout_seconds": new.timeout_seconds,
            "schedule_to_start_seconds": new.schedule_to_start_seconds,
            "start_deadline": deadline,
            "priority": new.priority,
            "idempotency_key": new.idempotency_key,
            "input_tokens": 0,
            "output_tokens": 0,
            "reused_tokens": 0,
            "attempt_errors": [],
            "cancel_requested": False,
            "last_event_seq": 1,
            "created_at": now,
            "updated_at": now,
        }
        event = NewEvent(EventType.STATUS.value, {"from": None, "to": PENDING.value, "reason": "created"})
        if self._fast:
            async with fastpath.driver(self.engine) as db:
                row = await db.fetchrow(
                    fastpath.INSERT_TASK,
                    values["id"],
                    new.agent,
                    new.goal,
                    json_dumps(new.input),
                    new.model,
                    new.max_retries,
                    new.timeout_seconds,
                    new.schedule_to_start_seconds,
                    deadline,
                    new.priority,
                    new.idempotency_key,
                    now,
                    fastpath.events_json([event], now),
                )
        else:
            stmt = self._insert(TASKS).values(values)
            if new.idempotency_key is not None:
                # Concurrent creates with one key: the loser's INSERT waits for the
                # winner's commit, inserts nothing, and then reads the winner's row.
                stmt = stmt.on_conflict_do_nothing(index_elements=[TASKS.c.idempotency_key])
            row = await self._insert_with_event(stmt, event, now)
        if row is not None:
            return to_task(row), True
        async with self._read() as conn:
            existing = (await conn.execute(select(TASKS).where(TASKS.c.idempotency_key == new.idempotency_key))).first()
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish: tasks are never deleted
            raise RuntimeError("idempotency conflict without a conflicting row")
        return to_task(existing), False

    async def _insert_with_event(self, insert: Any, event: NewEvent, now: datetime) -> Any:
        """Insert a task row with its first event; the row, or None if the INSERT did nothing (a conflict).

        One statement on PostgreSQL (a data-modifying CTE), so a submit costs one round trip.
        """
        if self._dialect != "postgresql":
            async with self._write() as conn:
                row = (await conn.execute(insert.returning(*TASKS.c))).first()
                if row is not None:
                    await self._add_events(conn, row.id, 0, 1, [event], now)
                return row
        created = insert.returning(*TASKS.c).cte("created")
        first_event = select(
            created.c.id,
            literal(1),
            literal(0),
            literal(event.type),
            bindparam("payload", event.payload, type_=JSONB),
            literal(now, TASKS.c.created_at.type),
        )
        columns = ["task_id", "seq", "attempt", "type", "payload", "created_at"]
        added = EVENTS.insert().from_select(columns, first_event).returning(EVENTS.c.id).cte("added")
        async with database_errors(), self._autocommit.connect() as conn:
            return (await conn.execute(select(created).add_cte(added))).first()

    async def get(self, task_id: uuid.UUID) -> Task:
        async with self._read() as conn:
            row = (await conn.execute(select(TASKS).where(TASKS.c.id == task_id))).first()
        if row is None:
            raise TaskNotFound(f"task {task_id} not found")
        return to_task(row)

    async def list(
        self,
        *,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """Newest first, keyset-paginated on (created_at, id) so pages never skip or repeat."""
        stmt = select(TASKS).order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc()).limit(limit + 1)
        if status is not None:
            stmt = stmt.where(TASKS.c.status == TaskStatus(status).value)
            if not TaskStatus(status).is_terminal:
                stmt = stmt.where(UNFINISHED)
        if agent is not None:
            stmt = stmt.where(TASKS.c.agent == agent)
        if cursor is not None:
            created_at, last_id = _decode_cursor(cursor)
            stmt = stmt.where(tuple_(TASKS.c.created_at, TASKS.c.id) < tuple_(created_at, last_id))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        items = [to_task(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return TaskPage(items, _encode_cursor(items[-1]) if more else None)

    async def list_events(
        self, task_id: uuid.UUID, *, after_seq: int = 0, limit: int = 1000
    ) -> builtins.list[TaskEvent]:
        stmt = (
            select(EVENTS)
            .where(EVENTS.c.task_id == task_id, EVENTS.c.seq > after_seq)
            .order_by(EVENTS.c.seq)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
            # Only an empty answer needs the extra lookup: every task has its creation event.
            if not rows and (await conn.execute(select(TASKS.c.id).where(TASKS.c.id == task_id))).first() is None:
                raise TaskNotFound(f"task {task_id} not found")
        return [to_event(r) for r in rows]

    # ---- the outbox -------------------------------------------------------------

    # ---- the worker's side --------------------------------------------------------

    async def claim(self, task_id: uuid.UUID, worker_id: str) -> Claim | None:
        """pending → running for one attempt; None if it is not pending (duplicate delivery, cancelled…)."""
        now = utcnow()
        if self._fast:
            claim = await self._claims.submit((task_id, worker_id))
            if claim is not None:
                return claim
            async with self._write() as conn:
                await self._fail_unstarted(conn, task_id, utcnow())
            return None
        row = await self._transition(
            task_id,
            where=[
                TASKS.c.status == PENDING.value,
                or_(
                    TASKS.c.start_deadline.is_(None),
                    TASKS.c.attempts > 0,
                    TASKS.c.start_deadline >= now,
                ),
            ],
            values={
                "status": RUNNING.value,
                "attempts": TASKS.c.attempts + 1,
                "started_at": func.coalesce(TASKS.c.started_at, now),
                "claimed_at": now,
                "worker_id": worker_id,
                "updated_at": now,
            },
            events=[status_event(PENDING, RUNNING, "claimed", worker_id=worker_id)],
            attempt=None,
            now=now,
            returning=OTHER_TASK_COLUMNS,
        )
        if row is not None:
            return Claim(to_task(row), row.attempts)
        # Not claimable: fail it if it waited too long, else it simply is not pending.
        async with self._write() as conn:
            await self._fail_unstarted(conn, task_id, now)
        return None

    async def append_events(self, task_id: uuid.UUID, attempt: int, events: Sequence[NewEvent]) -> None:
        """Append the run's events; raises :class:`LeaseLost` unless ``attempt`` still owns the task."""
        if not events:
            return
        now = utcnow()
        if self._fast:
            owned = await self._appends.submit((task_id, attempt, len(events), fastpath.events_json(events, now)))
        else:
            row = await self._transition(
                task_id, where=self._fence(attempt), values={}, events=events, attempt=attempt, now=now
            )
            owned = row is not None
        if not owned:
            raise LeaseLost(f"task {task_id}: attempt {attempt} no longer owns it")

    async def save_checkpoint(
        self,
        task_id: uuid.UUID,
        attempt: int,
        checkpoint: dict[str, Any],
        input_tokens: int,
        output_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> None:
        """Store the last finished step so a later attempt resumes from it; add the step's tokens."""
        now = utcnow()
        values = {
            "checkpoint": checkpoint,
            **_usage(input_tokens, output_tokens, 0),
            "updated_at": now,
        }
        if self._fast:
            fields = (task_id, attempt, len(events), fastpath.events_json(events, now), json_dumps(checkpoint))
            owned = await self._checkpoints.submit((*fields, input_tokens, output_tokens))
        else:
            row = await self._transition(
                task_id, where=self._fence(attempt), values=values, events=events, attempt=attempt, now=now
            )
            owned = row is not None
        if not owned:
            raise LeaseLost(f"task {task_id}: attempt {attempt} no longer owns it")

    async def complete(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        result: Any,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        if self._fast:
            closing = [*events, status_event(RUNNING, TaskStatus.COMPLETED, "completed", attempt=attempt)]
            fields = (task_id, attempt, len(closing), fastpath.events_json(closing, utcnow()), json_dumps(result))
            return await self._completions.submit((*fields, input_tokens, output_tokens, reused_tokens))
        usage = _usage(input_tokens, output_tokens, reused_tokens)
        return await self._close(
            task_id, attempt, TaskStatus.COMPLETED, "completed", {"result": result, **usage}, events
        )

    async def fail(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        error_type: str,
        error_message: str,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        now = utcnow()
        values = {
            "error_type": error_type,
            "error_message": error_message,
            "attempt_errors": attempt_error(attempt, error_type, error_message, now),
            **_usage(input_tokens, output_tokens, reused_tokens),
        }
        return await self._close(
            task_id, attempt, TaskStatus.FAILED, error_type, values, events, now=now, error_type=error_type
        )

    async def schedule_retry(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        error_type: str,
        error_message: str,
        run_after: datetime,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        """running → pending after a retryable failure; the checkpoint stays so the next attempt resumes."""
        now = utcnow()
        values = {
            "published_at": None,
            "run_after": run_after,
            "attempt_errors": attempt_error(attempt, error_type, error_message, now),
            **_usage(input_tokens, output_tokens, reused_tokens),
        }
        return await self._close(
            task_id,
            attempt,
            PENDING,
            "retry",
            values,
            events,
            now=now,
            error_type=error_type,
            run_after=run_after.isoformat(),
        )

    async def finish_cancelled(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        values = {
            "error_type": ErrorType.CANCELLED.value,
            "error_message": "cancelled on request",
            **_usage(input_tokens, output_tokens, reused_tokens),
        }
        return await self._close(task_id, attempt, TaskStatus.CANCELLED, "cancelled", values, events)

    async def hand_back(self, task_id: uuid.UUID, attempt: int, *, reason: str) -> bool:
        """running → pending without consuming the attempt (a graceful shutdown is not the task's fault)."""
        values = {"published_at": None, "run_after": None, "attempts": TASKS.c.attempts - 1}
        return await self._close(task_id, attempt, PENDING, reason, values, ())

    async def _close(
        self,
        task_id: uuid.UUID,
        attempt: int,
        to: TaskStatus,
        reason: str,
        values: dict[str, Any],
        events: Sequence[NewEvent],
        *,
        now: datetime | None = None,
        **extra: Any,
    ) -> bool:
        """Move a running task on, fenced by its attempt; False if that attempt no longer owns it."""
        now = now or utcnow()
        values = {**values, "status": to.value, "worker_id": None, "updated_at": now}
        if to.is_terminal:
            values["finished_at"] = now
        all_events = [*events, status_event(RUNNING, to, reason, attempt=attempt, **extra)]
        row = await self._transition(
            task_id, where=self._fence(attempt), values=values, events=all_events, attempt=attempt, now=now
        )
        return row is not None

    @staticmethod
    def _fence(attempt: int) -> builtins.list[Any]:
        return [TASKS.c.status == RUNNING.value, TASKS.c.attempts == attempt]


def _usage(input_tokens: int, output_tokens: int, reused_tokens: int) -> dict[str, Any]:
    """Token counts are *added*: a run reports what it spent since its last write (checkpoint or final),
    so usage of every attempt, including one that crashed after a checkpoint, is counted exactly once."""
    return {
        "input_tokens": TASKS.c.input_tokens + input_tokens,
        "output_tokens": TASKS.c.output_tokens + output_tokens,
        "reused_tokens": TASKS.c.reused_tokens + reused_tokens,
    }


def _encode_cursor(task: Task) -> str:
    raw = json.dumps([task.created_at.isoformat(), task.id.hex]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = json.loads(raw)
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return created_at, uuid.UUID(hex=task_id)
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise InvalidRequest(f"malformed cursor {cursor[:100]!r}") from None
