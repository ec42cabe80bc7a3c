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
from bench.pipeline import deploy, drain, io_bound, latency, streams, submit
from bench.progress import Drain
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


async def drains(results: Results, cfg: bench_config.Config, log_dir: Path) -> None:
    """Every system in turn, ``cfg.rounds`` times: the machine's speed drifts over minutes, so each
    system's median round is compared with rounds measured beside it, not minutes apart."""
    with services.scratch_database() as url:
        for round_no in range(1, cfg.rounds + 1):
            for processes in cfg.processes:
                if "baselines" in cfg.only:
                    for name, measure in BASELINE_DRAINS.items():
                        with services.scratch_queue("drain") as queue:
                            worker = WorkerConfig(services.AMQP_URL, queue, services.dsn(url))
                            run = measure(worker, cfg.n, processes, log_dir)
                            found = await attempt(results, f"round {round_no}: {name} {processes}p", run)
                        if found is not None:
                            results.drain_rounds.setdefault((name, processes), []).append(found)
                if "drain" in cfg.only:
                    ours = await attempt(
                        results,
                        f"round {round_no}: {OPSCORE} {processes}p",
                        drain.measure(cfg.n, processes, log_dir, rate_limits=cfg.rate_limits),
                    )
                    if ours is not None:
                        results.drain_rounds.setdefault((OPSCORE, processes), []).append(ours.drain)
                        best = results.opscore_drains.get(processes)
                        results.opscore_drains[processes] = _larger_rss(best, ours)
    for key, rounds in results.drain_rounds.items():
        results.drains[key] = median(rounds)
        print(f"  {key[0]} {key[1]}p: " + ", ".join(f"{d.steady_rate:.0f}" for d in rounds) + " tasks/s", flush=True)


async def stream_drains(results: Results, cfg: bench_config.Config, log_dir: Path) -> None:
    """The 2-process drain with the API up, without and with ``cfg.subscribers`` streams, in turn each round."""
    rates: dict[int, list[float]] = {0: [], cfg.subscribers: []}
    for round_no in range(1, cfg.rounds + 1):
        for subscribers in rates:
            run = streams.measure(cfg.n, 2, log_dir, subscribers)
            found = await attempt(results, f"round {round_no}: drain 2p, {subscribers} streams", run)
            if found is not None:
                rates[subscribers].append(found.steady_rate)
    for subscribers, found_rates in rates.items():
        print(f"  {subscribers} streams: " + ", ".join(f"{r:.0f}" for r in found_rates) + " tasks/s", flush=True)
    if all(rates.values()):
        without, with_streams = (sorted(r)[(len(r) - 1) // 2] for r in rates.values())
        print(f"  median with {cfg.subscribers} streams / without: {with_streams / without:.3f}", flush=True)


def median(rounds: list[Drain]) -> Drain:
    ordered = sorted(rounds, key=lambda d: d.steady_rate)
    return ordered[(len(ordered) - 1) // 2]


def _larger_rss(kept: drain.OpsCoreDrain | None, new: drain.OpsCoreDrain) -> drain.OpsCoreDrain:
    """The round whose largest worker process was largest: memory is reported at its peak."""
    if kept is None or max(new.rss_mb.values(), default=0) > max(kept.rss_mb.values(), default=0):
        return new
    return kept


async def submits_and_latency(results: Results, cfg: bench_config.Config, log_dir: Path) -> None:
    if "submit" in cfg.only:
        found = await attempt(results, "submit, bare and ops-core in turn", _submits(cfg, log_dir))
        for key, submit_result in zip(("bare", "ops-core"), found or [], strict=False):
            results.submits[key] = submit_result
    for key, system in (("bare", deploy.bare), ("ops-core", deploy.opscore)):
        if "e2e" in cfg.only and (e2e := await attempt(results, f"end-to-end {key}", _e2e(system, cfg, log_dir))):
            results.e2e[key] = e2e


# Each scenario gets a fresh deployment: no scenario's leftovers (rows, queued messages) affect the next.
async def _submits(cfg: bench_config.Config, log_dir: Path) -> list[submit.Submit]:
    with deploy.bare(log_dir) as bare, deploy.opscore(log_dir) as ours:
        found = await submit.measure([bare, ours], cfg.submit_rate, cfg.submit_seconds, cfg.max_rates, cfg.step_seconds)
    for one in found:
        at = one.at_rate
        print(
            f"  {one.name}: max sustained {one.max_rate:.0f} req/s; at {at.offered:.0f} req/s"
            f" p50 {at.latency.p50 * 1000:.1f} ms, p99 {at.latency.p99 * 1000:.1f} ms",
            flush=True,
        )
    return found


async def _e2e(system: Deploy, cfg: bench_config.Config, log_dir: Path) -> latency.EndToEnd:
    with system(log_dir) as deployed:
        found = await latency.measure(deployed, cfg.e2e_rate, cfg.e2e_seconds, cfg.e2e_processes)
    print(f"  {found.name}: submit → running {found.dispatch}; submit → completed {found.total}", flush=True)
    return found


async def run_all(cfg: bench_config.Config, log_dir: Path) -> Results:
    results = Results(config=cfg, machine=await asyncio.to_thread(machine.describe))
    started = time.monotonic()
    if "baselines" in cfg.only or "drain" in cfg.only:
        await drains(results, cfg, log_dir)
    await submits_and_latency(results, cfg, log_dir)
    if "streams" in cfg.only:
        await stream_drains(results, cfg, log_dir)
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
