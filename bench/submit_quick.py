"""``uv run python -m bench.submit_quick``: only the submit comparison, printed, no report written.

The full suite takes the better part of an hour; tuning the submit path wants
an answer in about a minute. Same deployments, warm-up and open-loop load as
the suite's submit scenario, so the figures are comparable with the report's.
It also prints the API's CPU time per request, which (unlike req/s on a
shared machine) hardly moves when other work competes for the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import psutil

from bench.load import Load, burst, fixed_rate, max_sustained
from bench.pipeline import deploy, submit

SYSTEMS = {"bare": deploy.bare, "ops-core": deploy.opscore}


def cpu_seconds(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def line(name: str, load: Load) -> str:
    lat = load.latency
    return (
        f"{name:>9} offered {load.offered:6.1f}/s achieved {load.achieved:6.1f}/s ok {load.ok} err {load.errors} "
        f"dropped {load.dropped} late {load.late}  p50 {lat.p50 * 1000:6.1f} p95 {lat.p95 * 1000:6.1f} "
        f"p99 {lat.p99 * 1000:6.1f} max {lat.max * 1000:6.1f} ms"
    )


async def run(names: list[str], rate: float, seconds: float, rates: list[float], step_seconds: float) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="opscore-submit-"))
    print(f"process logs: {log_dir}", flush=True)
    for name in names:
        with SYSTEMS[name](log_dir) as system:
            system.start_api()
            await system.ready()
            await burst(system.submit_url, [deploy.HELLO] * submit.WARMUP)
            assert system.api is not None
            before = cpu_seconds(system.api.pid)
            load = await fixed_rate(system.submit_url, deploy.HELLO, rate, seconds)
            per_request = (cpu_seconds(system.api.pid) - before) / max(1, load.ok) * 1000
            print(f"{line(name, load)}  api cpu {per_request:.2f} ms/req", flush=True)
            if rates:
                best, steps = await max_sustained(system.submit_url, deploy.HELLO, rates, step_seconds)
                for step in steps:
                    print(line(name, step) + ("" if step.sustained else "  (not sustained)"), flush=True)
                print(f"{name:>9} max sustained {best:.1f} req/s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.submit_quick", description=__doc__)
    parser.add_argument("--system", choices=[*SYSTEMS, "both"], default="both")
    parser.add_argument("--rate", type=float, default=50.0, help="offered req/s for the fixed-rate comparison")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="", help="comma-separated rates for a max-sustained search, e.g. 75,100,125")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    names = list(SYSTEMS) if args.system == "both" else [args.system]
    rates = [float(r) for r in args.rates.split(",") if r]
    asyncio.run(run(names, args.rate, args.seconds, rates, args.step_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
