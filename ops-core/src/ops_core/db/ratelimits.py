"""The shared state of provider rate limits, on the ``rate_limits`` table (both backends).

One call, :meth:`RateLimitStore.apply`, is one transaction over the rows of the
limits one model draws from. It locks them (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's write transaction holds the whole database), applies what
a worker process collected since its last call (token corrections, a 429's
hold) and then takes each waiting request in turn with agentkit's GCRA
arithmetic, and writes the new times back. Concurrent workers on any machine
serialise on the row locks, so none can overdraw. Time is the database's clock
on PostgreSQL, so machines with skewed clocks still agree; SQLite serves one
machine, whose clock it uses.

A worker calls it for many requests at once (see ``ops_core.ratelimits``), so
its few round trips are shared. Like ``access.py``, one set of Core statements
serves both backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from agentkit.models.gcra import Bucket, RateLimit, grant, penalised, settled
from ops_core.db.engine import database_errors
from ops_core.db.models import RATE_LIMITS
from ops_core.db.rules import utcnow

_C = RATE_LIMITS.c


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a worker owes the limits of one model since its last call: token corrections and a 429's hold."""

    extra_tokens: Mapping[str, float]
    hold_seconds: float = 0.0


class RateLimitStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert
        # The database's clock where there is one to share; SQLite is one machine's.
        self._clock = clock
        self._known: set[str] = set()
        self._write = (
            update(RATE_LIMITS)
            .where(_C.key == bindparam("b_key"))
            .values(
                request_tat=bindparam("b_request_tat"),
                token_tat=bindparam("b_token_tat"),
                blocked_until=bindparam("b_blocked_until"),
                updated_at=bindparam("b_updated_at"),
            )
        )

    async def apply(
        self, limits: Mapping[str, RateLimit], takes: Sequence[int], settlement: Settlement | None = None
    ) -> list[float]:
        """Settle, then take one request of each of ``takes`` tokens, in order, from every limit in ``limits``.

        Returns one wait per request: 0.0 when it was taken, else the seconds until it
        may be (nothing was taken for it).
        """
        keys = sorted(limits)  # one lock order for every worker: no deadlocks
        async with database_errors(), self.engine.begin() as conn:
            await self._ensure(conn, keys)
            now, buckets = await self._lock(conn, keys)
            locked = dict(buckets)
            if settlement is not None:
                for key, extra in settlement.extra_tokens.items():
                    if key in limits:
                        buckets[key] = settled(buckets[key], limits[key], extra)
                if settlement.hold_seconds > 0:
                    for key in keys:
                        buckets[key] = penalised(buckets[key], now, settlement.hold_seconds)
            waits = [grant(buckets, limits, now, tokens) for tokens in takes]
            changed = [key for key in keys if buckets[key] != locked[key]]
            if changed:
                stamp = utcnow()
                await conn.execute(
                    self._write,
                    [
                        {
                            "b_key": key,
                            "b_request_tat": buckets[key].request_tat,
                            "b_token_tat": buckets[key].token_tat,
                            "b_blocked_until": buckets[key].blocked_until,
                            "b_updated_at": stamp,
                        }
                        for key in changed
                    ],
                )
        return waits

    async def state(self, key: str) -> Bucket | None:
        """One limit's state as stored (for tests and inspection)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(RATE_LIMITS).where(_C.key == key))).mappings().first()
        return None if row is None else Bucket(row["request_tat"], row["token_tat"], row["blocked_until"])

    async def _ensure(self, conn: AsyncConnection, keys: Sequence[str]) -> None:
        """The rows exist: inserted once, the first time a process meets a key (no-op if another did)."""
        missing = [key for key in keys if key not in self._known]
        if not missing:
            return
        stamp = utcnow()
        stmt = self._insert(RATE_LIMITS).values(
            [
                {"key": key, "request_tat": 0.0, "token_tat": 0.0, "blocked_until": 0.0, "updated_at": stamp}
                for key in missing
            ]
        )
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=[_C.key]))
        self._known.update(missing)

    async def _lock(self, conn: AsyncConnection, keys: Sequence[str]) -> tuple[float, dict[str, Bucket]]:
        columns: list[ColumnElement[Any]] = [_C.key, _C.request_tat, _C.token_tat, _C.blocked_until]
        if self._postgres:
            columns.append(func.extract("epoch", func.clock_timestamp()).label("now"))
        stmt = select(*columns).where(_C.key.in_(keys)).order_by(_C.key).with_for_update()
        rows = (await conn.execute(stmt)).all()
        buckets = {row.key: Bucket(row.request_tat, row.token_tat, row.blocked_until) for row in rows}
        if len(buckets) != len(keys):
            # A row this process thought it had made is gone (a restored database): make it again.
            self._known.difference_update(keys)
            await self._ensure(conn, keys)
            return await self._lock(conn, keys)
        now = float(rows[0].now) if self._postgres else self._clock()
        return now, buckets
