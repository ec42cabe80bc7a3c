"""The outbox relay: publishes pending tasks whose message was never sent, or was sent and lost.

A task row is committed before its message is published, so a publish that
failed (or a process that died in between) leaves the task unpublished; the
relay sends it. A message can also be lost after a successful publish
(dead-lettered, a queue deleted by hand): a task published
``republish_after_seconds`` ago and never claimed is published again. A
duplicate is harmless: the claim is conditional.

An in-process broker (``memory://``) starts empty: every message published
before this process started died with the process that held the queue. So
with it, anything published before this relay started is due at once;
without that, a task handed back when ``opscore dev`` stopped would wait
``republish_after_seconds`` after the restart.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from ops_core.config import Settings
from ops_core.db.store import TaskStore
from ops_core.queue.publisher import Publisher

log = logging.getLogger(__name__)

RELAY_BATCH = 500


class Relay:
    def __init__(self, store: TaskStore, publisher: Publisher, settings: Settings) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._started_at = datetime.now(UTC)

    def republish_before(self, now: datetime) -> datetime:
        """Tasks last published before this are published again."""
        before = now - timedelta(seconds=self._settings.republish_after_seconds)
        if self._settings.is_memory_broker:
            return max(before, self._started_at)
        return before

    async def __call__(self) -> None:
        republish_before = self.republish_before(datetime.now(UTC))
        due = await self._store.due_for_publish(limit=RELAY_BATCH, republish_before=republish_before)
        published: list[UUID] = []
        for task in due:
            try:
                await self._publisher.publish(task.id, priority=task.priority)
            except Exception as exc:
                log.warning("relay: broker still unavailable: %s", exc)
                break
            published.append(task.id)
        if published:
            await self._store.mark_published(published, republished_before=republish_before)
