"""What every part of the store shares: tables as Core objects, transactions, event inserts, row mapping."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Table, bindparam, cast, column, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

from ops_core.db import models  # noqa: F401 - registers the tables
from ops_core.db.engine import READ_ONLY, database_errors
from ops_core.db.models import NewEvent, Task, TaskEvent
from ops_core.db.types import JSONType, json_array_append
from ops_core.domain import EventType
from ops_core.lifecycle import TaskStatus

TASKS: Table = SQLModel.metadata.tables["tasks"]
EVENTS: Table = SQLModel.metadata.tables["task_events"]
WORKERS: Table = SQLModel.metadata.tables["workers"]
MEMORIES: Table = SQLModel.metadata.tables["memories"]
# Implied by status pending or running; spelled out in their scans so the planner can use ix_tasks_active.
UNFINISHED = TASKS.c.finished_at.is_(None)
# What a RETURNING needs besides the two columns StoreBase._bump always returns.
OTHER_TASK_COLUMNS = [c for c in TASKS.c if c.name not in ("last_event_seq", "attempts")]


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_task(row: Any) -> Task:
    """A Task from a SQLAlchemy row or an asyncpg record (the fast path's)."""
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    values["status"] = TaskStatus(values["status"])
    return Task(**values)


def to_event(row: Any) -> TaskEvent:
    return TaskEvent(**row._mapping)


def status_event(old: TaskStatus, new: TaskStatus, reason: str | None = None, **extra: Any) -> NewEvent:
    payload: dict[str, Any] = {"from": old.value, "to": new.value}
    if reason is not None:
        payload["reason"] = reason
    payload.update(extra)
    return NewEvent(EventType.STATUS.value, payload)


def attempt_error(attempt: int, error_type: str, message: str, at: datetime) -> ColumnElement[Any]:
    """``attempt_errors`` with one more entry, appended by the database in the same UPDATE."""
    entry = {"attempt": attempt, "type": error_type, "message": message, "at": at.isoformat()}
    return json_array_append(TASKS.c.attempt_errors, bindparam(None, entry, type_=JSONType))


class StoreBase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        # A single statement needs no BEGIN/COMMIT round trips around it.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # PostgreSQL runs the per-task statements as hand-written SQL (see fastpath.py).
        self._fast = self._dialect == "postgresql"

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with database_errors(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with database_errors(), self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            yield conn

    def _insert(self, table: Table) -> Any:
        """An INSERT that supports ``on_conflict_*`` on both dialects."""
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def _bump(
        self,
        conn: AsyncConnection,
        task_id: uuid.UUID,
        *,
        where: Sequence[ColumnElement[bool]],
        values: Mapping[str, Any],
        events: int,
        returning: Sequence[Any] = (),
    ) -> Any:
        """One conditional UPDATE of a task that also reserves ``events`` seq numbers.

        Reserving seqs in the row that is being updated anyway serialises
        concurrent writers on its row lock, so their seqs never collide.
        Returns the row (``last_event_seq``, ``attempts`` and ``returning``)
        or None when the condition no longer holds.
        """
        stmt = (
            update(TASKS)
            .where(TASKS.c.id == task_id, *where)
            .values(last_event_seq=TASKS.c.last_event_seq + events, **values)
            .returning(TASKS.c.last_event_seq, TASKS.c.attempts, *returning)
        )
        return (await conn.execute(stmt)).first()

    async def _transition(
        self,
        task_id: uuid.UUID,
        *,
        where: Sequence[ColumnElement[bool]],
        values: Mapping[str, Any],
        events: Sequence[NewEvent],
        attempt: int | None,
        now: datetime,
        returning: Sequence[Any] = (),
    ) -> Any:
        """A conditional UPDATE of a task and the events it brings, atomically; the row, or None.

        With ``attempt`` None the events are stamped with the attempt the UPDATE
        leaves on the row (a claim), in their ``attempt`` column and payload.
        On PostgreSQL this is one statement (the INSERT is a data-modifying CTE
        over the UPDATE's RETURNING) sent in autocommit mode: one round trip,
        so a task's claim and close cost what two bare UPDATEs cost. SQLite
        has no data-modifying CTEs: there it is an UPDATE and an INSERT in one
        transaction.
        """
        if self._dialect != "postgresql":
            async with self._write() as conn:
                row = await self._bump(
                    conn, task_id, where=where, values=values, events=len(events), returning=returning
                )
                if row is not None and events:
                    if attempt is None:
                        events = [
                            NewEvent(e.type, {**e.payload, "attempt": row.attempts}, e.created_at) for e in events
                        ]
                    stamp = row.attempts if attempt is None else attempt
                    await self._add_events(conn, task_id, stamp, row.last_event_seq, events, now)
                return row
        bumped = (
            update(TASKS)
            .where(TASKS.c.id == task_id, *where)
            .values(last_event_seq=TASKS.c.last_event_seq + len(events), **values)
            .returning(TASKS.c.last_event_seq, TASKS.c.attempts, *returning)
            .cte("bumped")
        )
        stmt = select(bumped)
        if events:
            stmt = stmt.add_cte(self._events_insert(task_id, bumped, events, attempt, now))
        async with database_errors(), self._autocommit.connect() as conn:
            return (await conn.execute(stmt)).first()

    @staticmethod
    def _events_insert(
        task_id: uuid.UUID, bumped: Any, events: Sequence[NewEvent], attempt: int | None, now: datetime
    ) -> Any:
        """INSERT … SELECT of ``events`` (one JSON array parameter), numbered from the bumped row's seq."""
        batch = [
            {"type": e.type, "payload": e.payload, "created_at": (e.created_at or now).isoformat()} for e in events
        ]
        item = (
            func.jsonb_array_elements(bindparam("events", batch, type_=JSONB))
            .table_valued(column("value", JSONB), with_ordinality="ord")
            .render_derived(name="item")
        )
        payload: Any = item.c.value["payload"]
        stamp: Any = literal(attempt)
        if attempt is None:
            payload = payload.op("||")(func.jsonb_build_object("attempt", bumped.c.attempts))
            stamp = bumped.c.attempts
        rows = select(
            literal(task_id, TASKS.c.id.type),
            bumped.c.last_event_seq - len(events) + item.c.ord,
            stamp,
            item.c.value["type"].astext,
            payload,
            cast(item.c.value["created_at"].astext, DateTime(timezone=True)),
        ).select_from(bumped.join(item, literal(True)))
        columns = ["task_id", "seq", "attempt", "type", "payload", "created_at"]
        return EVENTS.insert().from_select(columns, rows).returning(EVENTS.c.id).cte("added")

    async def _add_events(
        self,
        conn: AsyncConnection,
        task_id: uuid.UUID,
        attempt: int,
        last_seq: int,
        events: Sequence[NewEvent],
        now: datetime,
    ) -> None:
        if not events:
            return
        first = last_seq - len(events) + 1
        rows = [
            {
                "task_id": task_id,
                "seq": first + i,
                "attempt": attempt,
                "type": ev.type,
                "payload": ev.payload,
                "created_at": ev.created_at or now,
            }
            for i, ev in enumerate(events)
        ]
        await conn.execute(EVENTS.insert(), rows)
