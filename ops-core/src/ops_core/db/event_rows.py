"""Event rows written by SQLAlchemy Core: the SQLite backend's writes and the approval writes (both backends).

PostgreSQL's hot-path writes number their events in SQL instead (``postgres._EVENTS``);
both take the seqs the task's UPDATE reserved, by ``rules.event_seqs``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from ops_core.db.models import EVENTS, NewEvent
from ops_core.db.rules import event_seqs


async def add_events(
    conn: AsyncConnection,
    task_id: uuid.UUID,
    last_event_seq: int,
    attempt: int,
    events: Sequence[NewEvent],
    now: datetime,
    *,
    stamp: bool = False,
) -> None:
    """Insert ``events`` with the seqs the UPDATE that left ``last_event_seq`` on the task reserved for them."""
    if not events:
        return
    rows = [
        {
            "task_id": task_id,
            "seq": seq,
            "attempt": attempt,
            "type": event.type,
            "payload": {**event.payload, "attempt": attempt} if stamp else event.payload,
            "created_at": event.created_at or now,
        }
        for seq, event in zip(event_seqs(last_event_seq, len(events)), events, strict=True)
    ]
    await conn.execute(EVENTS.insert(), rows)
