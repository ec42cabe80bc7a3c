"""ops-core drain throughput: a backlog of N tasks submitted through the API, then the workers started.

The API is stopped before the workers start so they have the machine to
themselves, and timing starts as the workers are started, as for the
baselines: the whole backlog is in RabbitMQ before anything consumes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ManagedProcess

from bench.load import burst
from bench.pipeline import deploy
from bench.progress import Drain, wait_drained
from bench.rss import RssSampler

# Runs beside a scenario once its workers are started (bench.profile attaches py-spy with it).
Observer = Callable[[deploy.OpsCore, ManagedProcess], Awaitable[None]]


@dataclass(frozen=True)
class OpsCoreDrain:
    drain: Drain
    rss_mb: dict[int, float]  # peak per worker-tree process


async def measure(
    n: int, processes: int, log_dir: Path, observer: Observer | None = None, *, rate_limits: str | None = None
) -> OpsCoreDrain:
    extra_env = {"OPSCORE_RATE_LIMITS": rate_limits} if rate_limits else None
    with deploy.opscore(log_dir, extra_env) as system:
        system.start_api()
        await system.ready()
        await burst(system.submit_url, [deploy.HELLO] * n, headers=system.headers)
        deploy.stop(system.api)
        started = time.monotonic()
        workers = system.start_workers(processes)
        observing = asyncio.create_task(observer(system, workers)) if observer else None
        try:
            with RssSampler([workers.pid]) as rss:
                drain = await wait_drained(
                    system.dsn,
                    deploy.completed_sql(system),
                    n,
                    processes=processes,
                    started=started,
                    failed_sql=deploy.failed_sql(system),
                    alive=workers.alive,
                )
        except Exception as exc:
            raise RuntimeError(f"{exc}\n--- worker log ---\n{workers.log_tail(40)}") from exc
        if observing:
            await observing
        return OpsCoreDrain(drain, rss.peaks())
