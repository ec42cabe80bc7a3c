"""``uv run python -m bench [--quick] [--n N]``: every scenario, then docs/benchmarks.md and the plots.

A scenario that fails is recorded with its error (and the worker log tail)
and the run goes on, so one broken system never hides the others' figures.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from bench import config as bench_config
from bench import machine, plots, report, services
from bench.baselines import celery_pg, dramatiq_noop, dramatiq_pg
from bench.baselines.env import WorkerConfig
from bench.pipeline import deploy, drain, io_bound, latency, submit
from bench.results import CELERY_PG, DRAMATIQ_PG, NOOP, OPSCORE, Results

T = TypeVar("T")
Deploy = Callable[[Path], AbstractContextManager[deploy.Deployment]]
BASELINE_DRAINS = {NOOP: dramatiq_noop.measure, DRAMATIQ_PG: dramatiq_pg.measure, CELERY_PG: celery_pg.measure}


async def attempt(results: Results, scenario: str, run: Awaitable[T]) -> T | None:
    print(f"[{time.strftime('%H:%M:%S')}] {scenario} ...", flush=True)
    try:
        value = await run
    except Exception as exc:
        results.errors[scenario] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return None
    print(f"[{time.strftime('%H:%M:%S')}] {scenario}: {value!r:.300}", flush=True)
    return value


async def baseline_drains(results: Results, cfg: bench_config.Config, log_dir: Path) -> None:
    with services.scratch_database() as url:
        for name, measure in BASELINE_DRAINS.items():
            for processes in cfg.processes:
                with services.scratch_queue("drain") as queue:
                    worker = WorkerConfig(services.AMQP_URL, queue, services.dsn(url))
                    found = await attempt(results, f"{name} {processes}p", measure(worker, cfg.n, processes, log_dir))
                if found is not None:
                    results.drains[name, processes] = found


async def opscore_drains(results: Results, cfg: bench_config.Config, log_dir: Path) -> None:
    for processes in cfg.processes:
        found = await attempt(results, f"{OPSCORE} {processes}p", drain.measure(cfg.n, processes, log_dir))
        if found is not None:
            results.opscore_drains[processes] = found
            results.drains[OPSCORE, processes] = found.drain


async def submits_and_latency(results: Results, cfg: bench_config.Config, log_dir: Path) -> None:
    for key, system in (("bare", deploy.bare), ("ops-core", deploy.opscore)):
        if "submit" in cfg.only and (found := await attempt(results, f"submit {key}", _submit(system, cfg, log_dir))):
            results.submits[key] = found
        if "e2e" in cfg.only and (e2e := await attempt(results, f"end-to-end {key}", _e2e(system, cfg, log_dir))):
            results.e2e[key] = e2e


# Each scenario gets a fresh deployment: no scenario's leftovers (rows, queued messages) affect the next.
async def _submit(system: Deploy, cfg: bench_config.Config, log_dir: Path) -> submit.Submit:
    with system(log_dir) as deployed:
        return await submit.measure(deployed, cfg.submit_rate, cfg.submit_seconds, cfg.max_rates, cfg.step_seconds)


async def _e2e(system: Deploy, cfg: bench_config.Config, log_dir: Path) -> latency.EndToEnd:
    with system(log_dir) as deployed:
        found = await latency.measure(deployed, cfg.e2e_rate, cfg.e2e_seconds, cfg.e2e_processes)
    print(f"  {found.name}: submit → running {found.dispatch}; submit → completed {found.total}", flush=True)
    return found


async def run_all(cfg: bench_config.Config, log_dir: Path) -> Results:
    results = Results(config=cfg, machine=await asyncio.to_thread(machine.describe))
    started = time.monotonic()
    if "baselines" in cfg.only:
        await baseline_drains(results, cfg, log_dir)
    if "drain" in cfg.only:
        await opscore_drains(results, cfg, log_dir)
    await submits_and_latency(results, cfg, log_dir)
    if "io" in cfg.only:
        results.io_bound = await attempt(
            results,
            "I/O-bound",
            io_bound.measure(cfg.io_n, cfg.io_concurrency, cfg.io_delay, log_dir),
        )
    results.seconds = time.monotonic() - started
    return results


def main(argv: list[str] | None = None) -> int:
    cfg = bench_config.parse(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="opscore-bench-"))
    print(f"process logs: {log_dir}", flush=True)
    results = asyncio.run(run_all(cfg, log_dir))
    if not cfg.complete:
        return 1 if results.errors else 0
    cfg.docs.mkdir(parents=True, exist_ok=True)
    images = plots.draw(results, cfg.docs)
    path = report.write(results, cfg.docs / "benchmarks.md", images)
    print(f"wrote {path} and {', '.join(str(image) for image in images)}")
    return 1 if results.errors else 0
