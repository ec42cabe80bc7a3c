"""The outbox: which pending tasks still need their message sent, and recording that it was.

A task row is committed before its message is published, so a publish that
fails (or a process that dies in between) leaves the row unpublished; the
workers' relay asks here for what to send again.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from ops_core.db import fastpath
from ops_core.db._base import TASKS, UNFINISHED, StoreBase, to_task, utcnow
from ops_core.db.models import Task
from ops_core.lifecycle import TaskStatus

PENDING = TaskStatus.PENDING


class OutboxOps(StoreBase):
    async def due_for_publish(
        self, *, limit: int, now: datetime | None = None, republish_before: datetime | None = None
    ) -> builtins.list[Task]:
        """Pending tasks whose message must be sent: never published, or (with ``republish_before``)
        last published before then and still not claimed, in case that message was lost."""
        now = now or utcnow()
        stmt = (
            select(TASKS)
            .where(
                UNFINISHED,
                TASKS.c.status == PENDING.value,
                _published_before(republish_before),
                or_(TASKS.c.run_after.is_(None), TASKS.c.run_after <= now),
            )
            .order_by(TASKS.c.created_at)
            .limit(limit)
        )
        async with self._read() as conn:
            return [to_task(r) for r in (await conn.execute(stmt)).all()]

    async def mark_published(
        self, task_ids: Sequence[uuid.UUID], *, republished_before: datetime | None = None
    ) -> None:
        if not task_ids:
            return
        if self._fast:
            async with fastpath.driver(self.engine) as db:
                await db.execute(fastpath.MARK_PUBLISHED, list(task_ids), utcnow(), republished_before)
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


def _published_before(when: datetime | None) -> Any:
    unpublished = TASKS.c.published_at.is_(None)
    return unpublished if when is None else or_(unpublished, TASKS.c.published_at < when)
