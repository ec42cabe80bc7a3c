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

On PostgreSQL the common case goes first as one plain-SQL statement in
autocommit (:data:`_GRANT_ALL`): one limit, no 429 to record, and the whole batch
fits. Its ``UPDATE … WHERE <the batch conforms>`` takes the row lock and is
re-checked on the locked row, so it is as safe as the transaction, at a quarter
of the round trips and far less CPU than Core (docs/benchmarks.md). When it
updates nothing (a request must wait, or the row is new) the transaction decides.
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
from ops_core.db.engine import database_errors, driver_connection
from ops_core.db.models import RATE_LIMITS
from ops_core.db.rules import utcnow

_C = RATE_LIMITS.c
# "No limit" for a bound compared in SQL: larger than any span of time.
_UNBOUNDED = 1e300

# $1 key; $2 the batch's request span (requests × interval) and $3 the requests' tolerance (burst ×
# interval); $4 the batch's token span and $5 the tokens' tolerance; $6 the token corrections' span.
# The same arithmetic as agentkit.models.gcra (wait_for, taken, settled), for a whole batch at once:
# a batch conforms exactly when its last request does.
_GRANT_ALL = """
UPDATE rate_limits AS r SET
    request_tat = CASE WHEN $2::float8 > 0 THEN greatest(r.request_tat, c.now) + $2 ELSE r.request_tat END,
    token_tat = CASE WHEN $4::float8 > 0 THEN greatest(r.token_tat + $6::float8, c.now) + $4
                     ELSE r.token_tat + $6 END,
    updated_at = now()
FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) AS c
WHERE r.key = $1::text
  AND r.blocked_until <= c.now
  AND greatest(r.request_tat, c.now) + $2 - c.now <= $3::float8
  AND greatest(r.token_tat + $6, c.now) + $4 - c.now <= $5::float8
RETURNING r.key
"""


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

        ``limits`` are one model's, most specific first (``agentkit.models.gcra.limits_for``);
        a 429's hold goes on that first one.

        Returns one wait per request: 0.0 when it was taken, else the seconds until it
        may be (nothing was taken for it).
        """
        if self._postgres and len(limits) == 1 and (settlement is None or settlement.hold_seconds <= 0):
            [(key, limit)] = limits.items()
            extra = settlement.extra_tokens.get(key, 0.0) if settlement is not None else 0.0
            if await self._grant_all(key, limit, takes, extra):
                return [0.0] * len(takes)
        return await self._apply_locked(limits, takes, settlement)

    async def _grant_all(self, key: str, limit: RateLimit, takes: Sequence[int], extra: float) -> bool:
        """The whole batch (and its corrections) in one statement, if all of it conforms now."""
        request_span, request_tolerance = 0.0, _UNBOUNDED
        if limit.rpm is not None:
            interval = 60 / limit.rpm
            request_span, request_tolerance = len(takes) * interval, limit.request_capacity * interval
        token_span, token_tolerance, extra_span = 0.0, _UNBOUNDED, 0.0
        if limit.tpm is not None:
            interval = 60 / limit.tpm
            units = sum(min(max(tokens, 0), limit.token_capacity) for tokens in takes)
            token_span, token_tolerance = units * interval, limit.token_capacity * interval
            extra_span = extra * interval
        async with driver_connection(self.engine) as conn:
            found = await conn.fetchval(
                _GRANT_ALL, key, request_span, request_tolerance, token_span, token_tolerance, extra_span
            )
        return found is not None

    async def _apply_locked(
        self, limits: Mapping[str, RateLimit], takes: Sequence[int], settlement: Settlement | None
    ) -> list[float]:
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
                    held = next(iter(limits))  # the most specific (agentkit.models.gcra.limits_for)
                    buckets[held] = penalised(buckets[held], now, settlement.hold_seconds)
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
