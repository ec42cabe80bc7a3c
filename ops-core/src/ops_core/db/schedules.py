"""Cron schedules in the database: create, read, list, pause, resume, delete, and firing a tick once.

:meth:`ScheduleStore.fire` is where "each tick fires exactly once" holds, for any
number of tickers (every worker process runs one): in one transaction it moves
``next_run_at`` on with a conditional UPDATE (``WHERE id = ? AND next_run_at =
<as read> AND state = 'active'``) and creates what each fired tick submits. Two
tickers that read the same due schedule race on that UPDATE; on PostgreSQL the
second waits for the first's row lock, then matches no row, and creates
nothing. Each tick's task also carries a deterministic idempotency key
(:func:`tick_key`), so even a replayed fire cannot create it twice.

A workflow is created by :class:`~ops_core.services.workflows.WorkflowService`
in its own transaction, so a workflow tick is started in two steps. The fire's
transaction records the tick in ``schedule_pending_ticks`` (:meth:`defer_tick`)
with the UPDATE that advances ``next_run_at``: a tick is owed exactly when it
fired. After the commit the ticker starts each owed tick's workflow with the
tick's idempotency key and then settles the tick (:meth:`settle_tick`: the row
deleted and ``fired``/``last_workflow_id`` updated together, by whoever deletes
it). A ticker that crashes in between leaves the row; the next pass of any
ticker (:meth:`pending_ticks`) starts it again, and the key makes that second
start return the first workflow. So each tick starts one workflow, whoever
repairs it and however often.

Schedules are few and fire rarely next to claims and event writes, so one Core
statement set serves both backends, as ``approvals.py`` does.
"""

from __future__ import annotations

import base64
import builtins
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ops_core.db.engine import database_errors, read_only
from ops_core.db.event_rows import add_events
from ops_core.db.models import SCHEDULE_PENDING_TICKS, SCHEDULES, TASKS, Task
from ops_core.db.rules import created_event, utcnow
from ops_core.db.store import decode_cursor
from ops_core.errors import ScheduleNotFound
from ops_core.tenancy import TenantScope, tenant_or_none

ACTIVE = "active"
PAUSED = "paused"
# One ticker pass reads at most this many due schedules (owed workflow ticks); the rest wait for the next pass.
DUE_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A row of the ``schedules`` table (see :class:`~ops_core.db.models.ScheduleTable`)."""

    id: uuid.UUID
    tenant: str
    name: str | None
    cron: str
    timezone: str
    catch_up: str
    template: dict[str, Any]
    state: str
    next_run_at: datetime
    last_tick_at: datetime | None
    last_task_id: uuid.UUID | None
    fired: int
    skipped: int
    created_at: datetime
    updated_at: datetime
    last_workflow_id: uuid.UUID | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Schedule:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class SchedulePage:
    items: builtins.list[Schedule]
    next_cursor: str | None


# Creates what one tick submits, inside the fire's transaction; the id created, or None if it existed.
TickBuilder = Callable[[AsyncConnection, Schedule, datetime], Awaitable[uuid.UUID | None]]


def tick_key(schedule_id: uuid.UUID, tick: datetime) -> str:
    """The idempotency key of the task a schedule's tick submits: one per schedule and tick."""
    return f"schedule:{schedule_id}:{tick.strftime('%Y-%m-%dT%H:%M:%SZ')}"


class ScheduleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def create(self, schedule: Schedule) -> Schedule:
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(insert(SCHEDULES).values(_values(schedule)))
        return schedule

    async def get(self, schedule_id: uuid.UUID, *, tenant: TenantScope) -> Schedule:
        """The schedule, or :class:`ScheduleNotFound` (also for another tenant's)."""
        stmt = select(SCHEDULES).where(SCHEDULES.c.id == schedule_id, *_of_tenant(tenant))
        async with self._read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise _not_found(schedule_id)
        return Schedule.from_row(row)

    async def list(self, *, tenant: TenantScope, limit: int = 50, cursor: str | None = None) -> SchedulePage:
        """Newest first, keyset-paginated on (created_at, id)."""
        stmt = select(SCHEDULES).where(*_of_tenant(tenant))
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            stmt = stmt.where(
                or_(
                    SCHEDULES.c.created_at < created_at,
                    and_(SCHEDULES.c.created_at == created_at, SCHEDULES.c.id < last_id),
                )
            )
        stmt = stmt.order_by(SCHEDULES.c.created_at.desc(), SCHEDULES.c.id.desc()).limit(limit + 1)
        async with self._read() as conn:
            rows = [Schedule.from_row(r) for r in (await conn.execute(stmt)).mappings()]
        items = rows[:limit]
        more = len(rows) > limit and items
        return SchedulePage(items, _encode_cursor(items[-1]) if more else None)

    async def pause(self, schedule_id: uuid.UUID, *, tenant: TenantScope) -> Schedule:
        """active → paused; pausing a paused schedule changes nothing."""
        return await self._set_state(schedule_id, tenant, PAUSED, {})

    async def resume(self, schedule_id: uuid.UUID, next_run_at: datetime, *, tenant: TenantScope) -> Schedule:
        """paused → active, due next at ``next_run_at``: ticks that fell in the pause are not run."""
        return await self._set_state(schedule_id, tenant, ACTIVE, {"next_run_at": next_run_at})

    async def _set_state(
        self, schedule_id: uuid.UUID, tenant: TenantScope, state: str, values: dict[str, Any]
    ) -> Schedule:
        stmt = (
            update(SCHEDULES)
            .where(SCHEDULES.c.id == schedule_id, SCHEDULES.c.state != state, *_of_tenant(tenant))
            .values(state=state, updated_at=utcnow(), **values)
            .returning(*SCHEDULES.c)
        )
        async with database_errors(), self.engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return await self.get(schedule_id, tenant=tenant)  # already so, or not found
        return Schedule.from_row(row)

    async def delete(self, schedule_id: uuid.UUID, *, tenant: TenantScope) -> None:
        """Delete the schedule (and its owed workflow ticks); the tasks and workflows it submitted stay.
        :class:`ScheduleNotFound` if there is none."""
        stmt = delete(SCHEDULES).where(SCHEDULES.c.id == schedule_id, *_of_tenant(tenant))
        async with database_errors(), self.engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise _not_found(schedule_id)
            await conn.execute(
                delete(SCHEDULE_PENDING_TICKS).where(SCHEDULE_PENDING_TICKS.c.schedule_id == schedule_id)
            )

    # ---- the ticker's side ---------------------------------------------------------------------

    async def due(self, now: datetime, *, limit: int = DUE_BATCH) -> builtins.list[Schedule]:
        """Active schedules whose next run is at or before ``now``, the most overdue first."""
        stmt = (
            select(SCHEDULES)
            .where(SCHEDULES.c.state == ACTIVE, SCHEDULES.c.next_run_at <= now)
            .order_by(SCHEDULES.c.next_run_at)
            .limit(limit)
        )
        async with self._read() as conn:
            return [Schedule.from_row(r) for r in (await conn.execute(stmt)).mappings()]

    async def fire(
        self,
        schedule: Schedule,
        *,
        ticks: Sequence[datetime],
        next_run_at: datetime,
        skipped: int,
        build: TickBuilder,
    ) -> builtins.list[uuid.UUID] | None:
        """Handle ``schedule``'s ticks up to ``next_run_at``, firing ``ticks``, in one transaction.

        Returns the ids created (empty when every tick was skipped or had fired before), or
        None when another ticker handled these ticks first (or the schedule was paused or
        deleted meanwhile): then nothing was written.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "next_run_at": next_run_at,
            "updated_at": now,
            "skipped": SCHEDULES.c.skipped + skipped,
        }
        if ticks:
            values["last_tick_at"] = ticks[-1]
        advance = (
            update(SCHEDULES)
            .where(
                SCHEDULES.c.id == schedule.id,
                SCHEDULES.c.next_run_at == schedule.next_run_at,
                SCHEDULES.c.state == ACTIVE,
            )
            .values(**values)
        )
        async with database_errors(), self.engine.begin() as conn:
            if (await conn.execute(advance)).rowcount != 1:
                return None
            created: builtins.list[uuid.UUID] = []
            for tick in ticks:
                made = await build(conn, schedule, tick)
                if made is not None:
                    created.append(made)
            if created:
                await conn.execute(
                    update(SCHEDULES)
                    .where(SCHEDULES.c.id == schedule.id)
                    .values(last_task_id=created[-1], fired=SCHEDULES.c.fired + len(created))
                )
        return created

    async def insert_task(self, conn: AsyncConnection, task: Task) -> bool:
        """Insert a tick's task with its first event, in the fire's transaction; False if its key exists."""
        stmt = (
            self._insert(TASKS)
            .values({c.name: getattr(task, c.name) for c in TASKS.c})
            .on_conflict_do_nothing(index_elements=[TASKS.c.tenant, TASKS.c.idempotency_key])
            .returning(TASKS.c.id)
        )
        if (await conn.execute(stmt)).first() is None:
            return False
        await add_events(conn, task.id, task.last_event_seq, 0, [created_event()], task.created_at)
        return True

    async def defer_tick(self, conn: AsyncConnection, schedule: Schedule, tick: datetime) -> None:
        """Record, in the fire's transaction, that ``tick`` owes a workflow (started after the commit)."""
        await conn.execute(
            self._insert(SCHEDULE_PENDING_TICKS)
            .values(schedule_id=schedule.id, tick=tick, created_at=utcnow())
            .on_conflict_do_nothing(
                index_elements=[SCHEDULE_PENDING_TICKS.c.schedule_id, SCHEDULE_PENDING_TICKS.c.tick]
            )
        )

    async def pending_ticks(self, *, limit: int = DUE_BATCH) -> builtins.list[tuple[Schedule, datetime]]:
        """The owed workflow ticks, oldest first, each with its schedule (paused or not: the tick fired)."""
        stmt = (
            select(SCHEDULES, SCHEDULE_PENDING_TICKS.c.tick.label("pending_tick"))
            .join(SCHEDULE_PENDING_TICKS, SCHEDULE_PENDING_TICKS.c.schedule_id == SCHEDULES.c.id)
            .order_by(SCHEDULE_PENDING_TICKS.c.tick)
            .limit(limit)
        )
        async with self._read() as conn:
            return [(Schedule.from_row(r), r["pending_tick"]) for r in (await conn.execute(stmt)).mappings()]

    async def settle_tick(self, schedule_id: uuid.UUID, tick: datetime, workflow_id: uuid.UUID | None) -> bool:
        """The owed tick is done: its workflow ``workflow_id`` exists (or, None, it can never start).

        Counts the workflow once, for whoever deletes the owed row; False if another ticker settled it first.
        """
        async with database_errors(), self.engine.begin() as conn:
            gone = await conn.execute(
                delete(SCHEDULE_PENDING_TICKS).where(
                    SCHEDULE_PENDING_TICKS.c.schedule_id == schedule_id, SCHEDULE_PENDING_TICKS.c.tick == tick
                )
            )
            if gone.rowcount != 1:
                return False
            if workflow_id is not None:
                await conn.execute(
                    update(SCHEDULES)
                    .where(SCHEDULES.c.id == schedule_id)
                    .values(last_workflow_id=workflow_id, fired=SCHEDULES.c.fired + 1)
                )
        return True

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return read_only(self.engine)


def _values(schedule: Schedule) -> dict[str, Any]:
    return {f.name: getattr(schedule, f.name) for f in fields(schedule)}


def _of_tenant(scope: TenantScope) -> builtins.list[Any]:
    tenant = tenant_or_none(scope)
    return [] if tenant is None else [SCHEDULES.c.tenant == tenant]


def _encode_cursor(schedule: Schedule) -> str:
    raw = json.dumps([schedule.created_at.isoformat(), schedule.id.hex]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _not_found(schedule_id: uuid.UUID) -> ScheduleNotFound:
    return ScheduleNotFound(f"schedule {schedule_id} not found")
