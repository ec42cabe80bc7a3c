"""Wait for a backlog to drain by polling one COUNT in PostgreSQL, and time it.

The broker cannot say when work is *done* (``broker.join`` ignores unacked
messages), so every drain is detected from what the work itself wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Drain:
    n: int
    processes: int
    seconds: float  # from worker start to the last completion
    # From the first observed completion to the last: the rate once startup (imports, connects) is paid.
    steady_n: int
    steady_seconds: float

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def steady_rate(self) -> float:
        return self.steady_n / self.steady_seconds if self.steady_seconds > 0 else float("nan")


class Stalled(RuntimeError):
    pass


async def wait_drained(
    dsn: str,
    count_sql: str,
    n: int,
    *,
    processes: int,
    started: float,
    give_up_after: float | None = None,
    failed_sql: str | None = None,
    alive: Callable[[], bool] = lambda: True,
) -> Drain:
    """Poll ``count_sql`` until it reaches ``n``; ``started`` is the ``time.monotonic()`` of the worker start."""
    # Even the slowest system under test does 50 tasks/s; anything slower is stuck.
    give_up_after = give_up_after or 60 + n / 50
    conn = await asyncpg.connect(dsn)
    try:
        first: tuple[float, int] | None = None
        while True:
            done = int(await conn.fetchval(count_sql))
            now = time.monotonic()
            if done and first is None:
                first = (now, done)
            if done >= n:
                first_at, first_done = first or (started, 0)
                return Drain(n, processes, now - started, n - first_done, now - first_at)
            if failed_sql is not None and (failed := int(await conn.fetchval(failed_sql))):
                raise Stalled(f"{failed} tasks failed ({done}/{n} done)")
            if not alive():
                raise Stalled(f"a worker process exited ({done}/{n} done)")
            if now - started > give_up_after:
                raise Stalled(f"timed out after {give_up_after:.0f}s with {done}/{n} done")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await conn.close()
