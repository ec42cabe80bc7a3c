"""Buffers a run's events and writes them in batches.

A run produces several events per step; writing each in its own round trip
would dominate the cost of a short task. Events are written together at each
finished step (with the checkpoint), when the runner's periodic flush comes
round during a long step, and with the final status.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic_core import to_jsonable_python

from agentkit import RunEvent
from ops_core.db.models import NewEvent
from ops_core.db.store import TaskStore
from ops_core.errors import DatabaseUnavailable
from ops_core.redact import redact


def jsonable(value: Any) -> Any:
    """Make ``value`` storable as JSON (pydantic models, datetimes, UUIDs…)."""
    return to_jsonable_python(value, fallback=repr)


class EventRecorder:
    def __init__(self, store: TaskStore, task_id: UUID, attempt: int) -> None:
        self._store = store
        self._task_id = task_id
        self._attempt = attempt
        self._buffer: list[NewEvent] = []
        # Serialises flushes so sequence numbers follow the order events happened.
        self._lock = asyncio.Lock()

    def add(self, type: str, payload: dict[str, Any]) -> None:
        # Tool arguments and results, model output and error text are stored for anyone with
        # tasks:read to see; a credential among them must not be.
        self._buffer.append(NewEvent(type=type, payload=redact(jsonable(payload)), created_at=datetime.now(UTC)))

    async def on_run_event(self, event: RunEvent) -> None:
        self.add(str(event.type), {"step": event.step, **event.payload})

    @property
    def pending(self) -> bool:
        """Events are waiting to be written."""
        return bool(self._buffer)

    def take(self) -> list[NewEvent]:
        events, self._buffer = self._buffer, []
        return events

    async def flush(self) -> None:
        if not self._buffer:
            return
        async with self._lock:
            events = self.take()
            if not events:
                return
            try:
                await self._store.append_events(self._task_id, self._attempt, events)
            except DatabaseUnavailable:
                # Keep them (in order, ahead of newer ones) for the next flush or the final write.
                self._buffer[:0] = events
                raise

    @property
    def lock(self) -> asyncio.Lock:
        """Held by writers that must not interleave with a flush (checkpoint, final status)."""
        return self._lock
