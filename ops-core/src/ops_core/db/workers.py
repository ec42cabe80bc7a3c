"""Worker registry, heartbeats, and crash recovery of tasks whose worker died."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ops_core.db._base import TASKS, UNFINISHED, WORKERS, StoreBase, attempt_error, status_event, utcnow
from ops_core.db.models import NewEvent, WorkerView
from ops_core.domain import ErrorType, EventType
from ops_core.errors import DatabaseUnavailable
from ops_core.lifecycle import TaskStatus

RUNNING, PENDING, FAILED = TaskStatus.RUNNING, TaskStatus.PENDING, TaskStatus.FAILED


class WorkerOps(StoreBase):
    async def ping(self) -> None:
        """SELECT 1; raises :class:`DatabaseUnavailable` when the database cannot answer in time."""
        async with self._read() as conn:
            if (await conn.execute(text("SELECT 1"))).scalar() != 1:  # pragma: no cover - defensive
                raise DatabaseUnavailable("database answered SELECT 1 wrongly")

    async def register_worker(self, worker_id: str, host: str, pid: int, concurrency: int) -> None:
        now = utcnow()
        values = {"host": host, "pid": pid, "concurrency": concurrency, "started_at": now, "last_heartbeat": now}
        stmt = self._insert(WORKERS).values(id=worker_id, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[WORKERS.c.id], set_={**values, "stopped_at": None})
        async with self._write() as conn:
            await conn.execute(stmt)

    async def heartbeat(self, worker_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(update(WORKERS).where(WORKERS.c.id == worker_id).values(last_heartbeat=utcnow()))

    async def deregister_worker(self, worker_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(update(WORKERS).where(WORKERS.c.id == worker_id).values(stopped_at=utcnow()))

    async def live_workers(self, *, stale_after: float) -> list[WorkerView]:
        cutoff = utcnow() - timedelta(seconds=stale_after)
        async with self._read() as conn:
            workers = (
                await conn.execute(
                    select(WORKERS)
                    .where(WORKERS.c.stopped_at.is_(None), WORKERS.c.last_heartbeat >= cutoff)
                    .order_by(WORKERS.c.started_at)
                )
            ).all()
            running: dict[str, list[uuid.UUID]] = {w.id: [] for w in workers}
            if running:
                rows = await conn.execute(
                    select(TASKS.c.worker_id, TASKS.c.id).where(
                        UNFINISHED, TASKS.c.status == RUNNING.value, TASKS.c.worker_id.in_(list(running))
                    )
                )
                for worker_id, task_id in rows:
                    running[worker_id].append(task_id)
        return [
            WorkerView(w.id, w.host, w.pid, w.concurrency, w.started_at, w.last_heartbeat, running[w.id])
            for w in workers
        ]

    async def requeue_orphans(self, *, stale_after: float, caller: str | None = None) -> list[uuid.UUID]:
        """Running tasks whose worker stopped heartbeating → pending (or failed when out of retries).

        The lost attempt counts. Each task moves with its own conditional
        UPDATE fenced on its attempt, so many workers may call this at once:
        each orphan is recovered exactly once. ``caller``, the reaping worker,
        is alive whatever its heartbeat says: its own runs are never orphans.
        """
        now = utcnow()
        cutoff = now - timedelta(seconds=stale_after)
        stmt = (
            select(TASKS.c.id, TASKS.c.attempts, TASKS.c.max_retries, TASKS.c.worker_id)
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
            )
            .order_by(TASKS.c.id)  # one lock order for every caller: no deadlocks
        )
        if caller is not None:
            stmt = stmt.where(TASKS.c.worker_id.is_distinct_from(caller))
        async with self._read() as conn:
            orphans = (await conn.execute(stmt)).all()
        moved: list[uuid.UUID] = []
        for task_id, attempt, max_retries, worker_id in orphans:
            message = f"worker {worker_id} stopped heartbeating during attempt {attempt}"
            exhausted = attempt > max_retries
            if await self._recover(task_id, attempt, ErrorType.WORKER_LOST.value, message, exhausted, now):
                moved.append(task_id)
        return moved

    async def fail_expired(self, now: datetime | None = None, *, grace_seconds: float = 60.0) -> list[uuid.UUID]:
        """Fail running tasks whose attempt outlived its timeout by ``grace_seconds`` (its worker never enforced it)."""
        now = now or utcnow()
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(TASKS.c.id, TASKS.c.attempts, TASKS.c.claimed_at, TASKS.c.timeout_seconds)
                    .where(UNFINISHED, TASKS.c.status == RUNNING.value, TASKS.c.claimed_at.is_not(None))
                    .order_by(TASKS.c.id)
                )
            ).all()
        expired: list[uuid.UUID] = []
        for task_id, attempt, claimed_at, timeout in rows:
            if claimed_at + timedelta(seconds=timeout + grace_seconds) >= now:
                continue
            message = f"attempt {attempt} ran past its {timeout}s timeout"
            if await self._recover(task_id, attempt, ErrorType.TIMEOUT.value, message, True, now):
                expired.append(task_id)
        return expired

    async def fail_unstarted(self, now: datetime | None = None) -> list[uuid.UUID]:
        """Fail pending tasks past their schedule-to-start deadline that no worker ever claimed.

        A claim fails such a task when its message arrives; this catches the
        ones whose message never arrives (no worker consumes, the broker is down).
        """
        now = now or utcnow()
        async with self._read() as conn:
            rows = await conn.execute(
                select(TASKS.c.id)
                .where(
                    UNFINISHED,
                    TASKS.c.status == PENDING.value,
                    TASKS.c.attempts == 0,
                    TASKS.c.start_deadline < now,
                )
                .order_by(TASKS.c.id)
            )
            candidates = [task_id for (task_id,) in rows]
        failed: list[uuid.UUID] = []
        for task_id in candidates:
            async with self._write() as conn:
                if await self._fail_unstarted(conn, task_id, now):
                    failed.append(task_id)
        return failed

    async def _fail_unstarted(self, conn: AsyncConnection, task_id: uuid.UUID, now: datetime) -> bool:
        """pending → failed (schedule_to_start_timeout) if it never started and its deadline passed."""
        row = await self._bump(
            conn,
            task_id,
            where=[TASKS.c.status == PENDING.value, TASKS.c.attempts == 0, TASKS.c.start_deadline < now],
            values={
                "status": FAILED.value,
                "error_type": ErrorType.SCHEDULE_TO_START_TIMEOUT.value,
                "error_message": "the task waited longer than its schedule-to-start timeout",
                "finished_at": now,
                "updated_at": now,
            },
            events=1,
        )
        if row is None:
            return False
        reason = ErrorType.SCHEDULE_TO_START_TIMEOUT.value
        event = status_event(PENDING, FAILED, reason, error_type=reason)
        await self._add_events(conn, task_id, 0, row.last_event_seq, [event], now)
        return True

    async def _recover(
        self, task_id: uuid.UUID, attempt: int, error_type: str, message: str, fail: bool, now: datetime
    ) -> bool:
        to = FAILED if fail else PENDING
        values = {
            "status": to.value,
            "worker_id": None,
            "updated_at": now,
            "attempt_errors": attempt_error(attempt, error_type, message, now),
        }
        if fail:
            values |= {"error_type": error_type, "error_message": message, "finished_at": now}
        else:
            values |= {"published_at": None, "run_after": None}
        events = [
            NewEvent(
                EventType.REQUEUED.value if not fail else EventType.ATTEMPT_FAILED.value,
                {"attempt": attempt, "error_type": error_type, "message": message},
            ),
            status_event(RUNNING, to, error_type, attempt=attempt),
        ]
        async with self._write() as conn:
            row = await self._bump(
                conn,
                task_id,
                where=[TASKS.c.status == RUNNING.value, TASKS.c.attempts == attempt],
                values=values,
                events=len(events),
            )
            if row is None:
                return False
            await self._add_events(conn, task_id, attempt, row.last_event_seq, events, now)
        return True
