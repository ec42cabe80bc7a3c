"""I/O-bound concurrency: runs whose one model call waits seconds at the local fake provider.

One worker process, ``OPSCORE_WORKER_CONCURRENCY`` runs at once: the question
is whether one process really holds that many waiting runs, within how much
memory, and how close it gets to the ideal throughput of concurrency / delay.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import free_port

from bench.load import burst
from bench.pipeline import deploy
from bench.pipeline.drain import Observer
from bench.rss import RssSampler, largest

SAMPLE_SECONDS = 0.2
COUNTS = """
SELECT count(*) FILTER (WHERE status = 'running') AS running,
       count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')) AS finished,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM tasks
"""
SPAN = "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM tasks WHERE status = 'completed'"


@dataclass(frozen=True)
class IoBound:
    n: int
    concurrency: int
    delay: float
    completed: int
    failed: int
    max_running: int
    span_seconds: float  # first claim to last completion, from the task rows
    rss_peak_mb: float

    @property
    def throughput(self) -> float:
        return self.completed / self.span_seconds if self.span_seconds else 0.0

    @property
    def ideal(self) -> float:
        return self.concurrency / self.delay


async def measure(n: int, concurrency: int, delay: float, log_dir: Path, observer: Observer | None = None) -> IoBound:
    fake = FakeOpenAI().start(free_port())
    env = {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "bench-key-for-the-local-fake",
        "OPSCORE_WORKER_CONCURRENCY": str(concurrency),
    }
    body = {"goal": f"wait for the model [[delay={delay:g}]]", "agent": "default", "model": "openai:fake"}
    try:
        with deploy.opscore(log_dir, env) as system:
            system.start_api()
            await system.ready()
            await burst(system.submit_url, [body] * n, headers=system.headers)
            deploy.stop(system.api)
            workers = system.start_workers(1)
            observing = asyncio.create_task(observer(system, workers)) if observer else None
            conn = await asyncpg.connect(system.dsn)
            try:
                with RssSampler([workers.pid]) as rss:
                    max_running, finished, failed = await _watch(
                        conn, n, deadline=time.monotonic() + 120 + 3 * delay * n / concurrency
                    )
                span = await conn.fetchval(SPAN) or 0.0
                if observing:
                    await observing
            finally:
                await conn.close()
            return IoBound(n, concurrency, delay, finished - failed, failed, max_running, span, largest(rss.peaks()))
    finally:
        fake.stop()


async def _watch(conn: asyncpg.Connection, n: int, deadline: float) -> tuple[int, int, int]:
    """Sample the running count until every task has finished; returns (max running, finished, failed)."""
    max_running = 0
    while True:
        row = await conn.fetchrow(COUNTS)
        max_running = max(max_running, row["running"])
        if row["finished"] >= n or time.monotonic() > deadline:
            return max_running, row["finished"], row["failed"]
        await asyncio.sleep(SAMPLE_SECONDS)
