"""agentkit's long-term memory (:class:`agentkit.memory.MemoryStore`) on the ``memories`` table.

``query`` only narrows the candidates: records containing any of the query's
terms, newest first, capped. agentkit re-ranks them, so the store does not
score; the cap keeps a large namespace from being loaded whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkit.memory import MemoryRecord
from ops_core.db.engine import database_errors, read_only
from ops_core.db.models import MEMORIES

_TERM = re.compile(r"[A-Za-z0-9]{3,}")
CANDIDATES_PER_RESULT = 10
MIN_CANDIDATES = 100
MAX_TERMS = 16


class DatabaseMemoryStore:
    """One agent's (``namespace``'s) memories; one Core statement each works on PostgreSQL and SQLite."""

    def __init__(self, engine: AsyncEngine, namespace: str) -> None:
        self.engine = engine
        self.namespace = namespace
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def save(self, record: MemoryRecord) -> None:
        values = {
            "id": record.id,
            "namespace": self.namespace,
            "text": record.text,
            "metadata": record.metadata,
            "created_at": record.created_at,
        }
        stmt = self._insert(MEMORIES).values(values).on_conflict_do_nothing(index_elements=[MEMORIES.c.id])
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(stmt)

    async def query(self, query: str, limit: int) -> Sequence[MemoryRecord]:
        terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(query)))[:MAX_TERMS]
        stmt = (
            select(MEMORIES)
            .where(MEMORIES.c.namespace == self.namespace)
            .order_by(MEMORIES.c.created_at.desc())
            .limit(max(MIN_CANDIDATES, limit * CANDIDATES_PER_RESULT))
        )
        if terms:
            stmt = stmt.where(or_(*(MEMORIES.c.text.ilike(f"%{term}%") for term in terms)))
        async with read_only(self.engine) as conn:
            rows = (await conn.execute(stmt)).all()
        return [MemoryRecord(id=r.id, text=r.text, metadata=r.metadata, created_at=r.created_at) for r in rows]
