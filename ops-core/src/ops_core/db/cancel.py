"""Operator actions on a task: cancel, and manual retry of a failed or cancelled one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from ops_core.db import fastpath
from ops_core.db._base import OTHER_TASK_COLUMNS, TASKS, StoreBase, status_event, to_task, utcnow
from ops_core.db.models import NewEvent, Task
from ops_core.domain import ErrorType, EventType
from ops_core.errors import Conflict, TaskFinished, TaskNotFound
from ops_core.lifecycle import TaskStatus

# Each round re-reads the status; a task can change under us only a few times
# (claim, finish), so running out means something is badly wrong.
MAX_ROUNDS = 10

PENDING, RUNNING, CANCELLED = TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.CANCELLED


class CancelOps(StoreBase):
    async def request_cancel(self, task_id: uuid.UUID) -> Task:
        """pending → cancelled at once; running → flag it (the worker stops the run); terminal → TaskFinished."""
        for _ in range(MAX_ROUNDS):
            current = await self._status_of(task_id)
            now = utcnow()
            async with self._write() as conn:
                if current is PENDING:
                    values: dict[str, Any] = {
                        "status": CANCELLED.value,
                        "error_type": ErrorType.CANCELLED.value,
                        "error_message": "cancelled before it started",
                        "finished_at": now,
                        "updated_at": now,
                    }
                    event = status_event(PENDING, CANCELLED, "cancel_requested")
                elif current is RUNNING:
                    values = {"cancel_requested": True, "updated_at": now}
                    event = NewEvent(EventType.CANCEL_REQUESTED.value, {})
                else:
                    raise TaskFinished(f"task {task_id} is already {current.value}")
                where: list[Any] = [TASKS.c.status == current.value]
                if current is RUNNING:
                    # A second request adds no event; the task is returned as it is.
                    where.append(TASKS.c.cancel_requested.is_(False))
                row = await self._bump(
                    conn, task_id, where=where, values=values, events=1, returning=OTHER_TASK_COLUMNS
                )
                if row is not None:
                    await self._add_events(conn, task_id, row.attempts, row.last_event_seq, [event], now)
                    return to_task(row)
                if current is RUNNING:
                    again = (await conn.execute(select(TASKS).where(TASKS.c.id == task_id))).first()
                    if again is not None and again.status == RUNNING.value and again.cancel_requested:
                        return to_task(again)
        raise Conflict(f"task {task_id} kept changing while it was being cancelled; try again")

    async def cancel_requested(self, task_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these running tasks have a cancel request (one query for all of a worker's runs)."""
        if not task_ids:
            return set()
        if self._fast:
            # A worker asks every half second for all its runs: rendering a thousand IN parameters each time
            # cost more CPU than the query.
            async with fastpath.driver(self.engine) as db:
                return {row["id"] for row in await db.fetch(fastpath.CANCEL_REQUESTED, list(task_ids))}
        stmt = select(TASKS.c.id).where(
            TASKS.c.id.in_(list(task_ids)),
            TASKS.c.status == RUNNING.value,
            TASKS.c.cancel_requested.is_(True),
        )
        async with self._read() as conn:
            return set((await conn.execute(stmt)).scalars())

    async def retry(self, task_id: uuid.UUID) -> Task:
        """failed|cancelled → pending, with a fresh retry budget.

        ``attempts`` and ``attempt_errors`` are kept (history). The budget is
        renewed by raising ``max_retries`` to ``attempts + <configured
        max_retries>``, so the worker's rule "no retries left once attempts >
        max_retries" needs no special case; ``retry_base`` remembers the
        attempts already used, so the configured value stays recoverable. The
        checkpoint is kept, so the new attempt resumes where the last one stopped.
        """
        for _ in range(MAX_ROUNDS):
            async with self._read() as conn:
                task = (await conn.execute(select(TASKS).where(TASKS.c.id == task_id))).first()
            if task is None:
                raise TaskNotFound(f"task {task_id} not found")
            current = TaskStatus(task.status)
            if current not in (TaskStatus.FAILED, CANCELLED):
                raise Conflict(f"task {task_id} is {current.value}; only failed or cancelled tasks can be retried")
            now = utcnow()
            deadline = None
            if task.schedule_to_start_seconds is not None:
                deadline = now + timedelta(seconds=task.schedule_to_start_seconds)
            values = {
                "status": PENDING.value,
                "published_at": None,
                "run_after": None,
                "cancel_requested": False,
                "error_type": None,
                "error_message": None,
                "result": None,
                "finished_at": None,
                "worker_id": None,
                "start_deadline": deadline,
                "max_retries": TASKS.c.attempts + TASKS.c.max_retries - TASKS.c.retry_base,
                "retry_base": TASKS.c.attempts,
                "updated_at": now,
            }
            async with self._write() as conn:
                row = await self._bump(
                    conn,
                    task_id,
                    where=[TASKS.c.status == current.value],
                    values=values,
                    events=1,
                    returning=OTHER_TASK_COLUMNS,
                )
                if row is not None:
                    event = status_event(current, PENDING, "manual_retry")
                    await self._add_events(conn, task_id, row.attempts, row.last_event_seq, [event], now)
                    return to_task(row)
        raise Conflict(f"task {task_id} kept changing while it was being retried; try again")

    async def _status_of(self, task_id: uuid.UUID) -> TaskStatus:
        async with self._read() as conn:
            status = (await conn.execute(select(TASKS.c.status).where(TASKS.c.id == task_id))).scalar()
        if status is None:
            raise TaskNotFound(f"task {task_id} not found")
        return TaskStatus(status)
