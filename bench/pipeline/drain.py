"""ops-core drain throughput: a backlog of N tasks submitted through the API, then the workers started.

The API is stopped before the workers start so they have the machine to
themselves, as the baselines' workers do. The backlog reaches the workers
through :mod:`bench.pipeline.backlog` (see there for why).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.load import burst
from bench.pipeline import backlog, deploy
from bench.progress import Drain, wait_drained
from bench.rss import RssSampler


@dataclass(frozen=True)
class OpsCoreDrain:
    drain: Drain
    rss_mb: dict[int, float]  # peak per worker-tree process


async def measure(n: int, processes: int, log_dir: Path) -> OpsCoreDrain:
    with deploy.opscore(log_dir, hold=True) as system:
        system.start_api()
        await system.ready()
        await burst(system.submit_url, [deploy.HELLO] * n)
        deploy.stop(system.api)
        workers = system.start_workers(processes)
        try:
            await system.workers_ready(processes)
            with RssSampler([workers.pid]) as rss:
                started = await backlog.release(system)
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
        return OpsCoreDrain(drain, rss.peaks())
