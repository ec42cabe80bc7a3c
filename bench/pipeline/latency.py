"""End-to-end latency at a steady rate: submit → running (dispatch) and submit → completed.

Read from each task's own timestamps in PostgreSQL (created_at by the API,
started_at by the worker's claim, finished_at by its last write), so the
client's timing plays no part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from bench.load import Load, burst, fixed_rate
from bench.pipeline import deploy
from bench.progress import wait_drained
from bench.rss import RssSampler, largest, tree_rss
from bench.stats import Latency

WARMUP = 50


@dataclass(frozen=True)
class EndToEnd:
    name: str
    load: Load
    dispatch: Latency
    total: Latency
    dispatch_samples: list[float]
    rss_worker_idle_mb: float
    rss_worker_peak_mb: float


async def measure(system: deploy.Deployment, rate: float, seconds: float, processes: int) -> EndToEnd:
    system.start_api()
    await system.ready()
    workers = system.start_workers(processes)
    await system.workers_ready(processes)
    started = time.monotonic()
    # Warm-up tasks prove the worker consumes and pay its first-task costs; they are left out of the figures.
    await burst(system.submit_url, [deploy.HELLO] * WARMUP, headers=system.headers)
    await wait_drained(system.dsn, deploy.completed_sql(system), WARMUP, processes=processes, started=started)
    idle = largest(tree_rss(workers.pid))
    with RssSampler([workers.pid]) as rss:
        load = await fixed_rate(system.submit_url, deploy.HELLO, rate, seconds, headers=system.headers)
        await wait_drained(
            system.dsn,
            deploy.completed_sql(system),
            WARMUP + load.ok,
            processes=processes,
            started=time.monotonic(),
            failed_sql=deploy.failed_sql(system),
            alive=workers.alive,
        )
    conn = await asyncpg.connect(system.dsn)
    try:
        rows = await conn.fetch(deploy.latency_sql(system), WARMUP)
    finally:
        await conn.close()
    dispatch = [row["dispatch"] for row in rows]
    return EndToEnd(
        name=system.name,
        load=load,
        dispatch=Latency.of(dispatch),
        total=Latency.of([row["total"] for row in rows]),
        dispatch_samples=dispatch,
        rss_worker_idle_mb=idle,
        rss_worker_peak_mb=largest(rss.peaks()),
    )
