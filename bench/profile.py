"""``uv run python -m bench.profile drain|io|submit``: where the busy process spends its CPU, by library.

py-spy samples one process while it holds the GIL (``--gil``), so each share
is a share of that process's Python CPU, the resource a worker's event loop or
the API runs out of first:

* ``drain``: the one worker process draining a backlog of offline-agent tasks;
* ``io``: the worker holding I/O-bound runs (``--concurrency`` at once, each
  waiting ``--delay`` seconds at the local fake OpenAI server);
* ``submit``: the API under a fixed ``POST /v1/tasks`` rate.

Sampling starts once the process is warm and lasts ``--seconds``. The raw
py-spy samples are kept (``--raw``) for a flame graph or a closer look.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
from tests.support.processes import ManagedProcess

from bench.load import burst, fixed_rate
from bench.pipeline import deploy, drain, io_bound, submit

# Each sample is charged to the innermost frame that matches one of these (first match wins).
COMPONENTS = (
    ("openai SDK", "openai/"),
    ("httpx2", "httpx2/"),
    ("aiohttp", "aiohttp/"),
    ("asyncpg (incl. socket writes)", "asyncpg/"),
    ("SQLAlchemy", "sqlalchemy/"),
    ("pika", "pika/"),
    ("dramatiq", "dramatiq/"),
    ("tenacity", "tenacity/"),
    ("pydantic", "pydantic/"),
    ("json", "json/"),
    ("logging", "logging/"),
    ("FastAPI / Starlette", "fastapi/"),
    ("FastAPI / Starlette", "starlette/"),
    ("uvicorn", "uvicorn/"),
    ("prometheus-client", "prometheus_client/"),
    ("ops_core.db", "ops_core/db/"),
    ("ops_core.api", "ops_core/api/"),
    ("ops_core.queue", "ops_core/queue/"),
    ("ops_core (services, runner)", "ops_core/"),
    ("agentkit", "agentkit/"),
    ("threading", "threading.py"),
    ("asyncio", "asyncio/"),
)


def component(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, marker in COMPONENTS:
            if marker in frame:
                return name
    return "other"


def summarise(raw: Path, top: int) -> str:
    by_component: Counter[str] = Counter()
    by_frame: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples, frames = int(count), stack.split(";")
        total += samples
        by_component[component(frames)] += samples
        for frame in set(frames):
            if "ops_core/" in frame or "agentkit/" in frame:
                by_frame[frame] += samples
    if not total:
        return "no samples (was the process busy?)"
    lines = [f"{total} samples while holding the GIL", "", "by library (innermost matching frame):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_component.most_common()]
    lines += ["", f"ops-core and agentkit frames, inclusive (top {top}):"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in by_frame.most_common(top)]
    return "\n".join(lines)


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """User + system CPU seconds of every process so far, by pid (with its name)."""
    found: dict[int, tuple[str, float]] = {}
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info["cpu_times"]
        if times is not None:
            found[process.pid] = (process.info["name"] or "?", times.user + times.system)
    return found


def census(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float) -> str:
    """Cores each kind of process used between two snapshots: is the sampled process the bottleneck?"""
    by_name: Counter[str] = Counter()
    for pid, (name, spent) in after.items():
        by_name[name] += spent - before.get(pid, (name, 0.0))[1]
    used = [(name, spent / seconds) for name, spent in by_name.most_common(6) if spent / seconds >= 0.01]
    return "cores used while sampling: " + ", ".join(f"{name} {cores:.2f}" for name, cores in used)


class PySpy:
    def __init__(self, seconds: float, warmup: float, raw: Path) -> None:
        found = shutil.which("py-spy")
        if found is None:
            raise SystemExit("py-spy is not installed: uv sync installs it with the dev group")
        self.binary = found
        self.seconds = seconds
        self.warmup = warmup
        self.raw = raw
        self.census = ""

    async def record(self, pid: int) -> None:
        await asyncio.sleep(self.warmup)
        args = ["record", "--pid", str(pid), "--gil", "--nonblocking", "--rate", "100", "--format", "raw"]
        args += ["--duration", str(round(self.seconds)), "--output", str(self.raw)]
        before, started = cpu_seconds(), time.monotonic()
        process = await asyncio.create_subprocess_exec(
            self.binary, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await process.communicate()
        self.census = census(before, cpu_seconds(), time.monotonic() - started)
        if process.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace').strip()}")

    async def worker(self, system: deploy.OpsCore, workers: ManagedProcess) -> None:
        await system.workers_ready(1)
        # The pool's supervisor runs its workers in spawned children (also with --processes 1), next to
        # multiprocessing's resource tracker: profile the first worker.
        children = [
            child for child in psutil.Process(workers.pid).children() if "spawn_main" in " ".join(child.cmdline())
        ]
        await self.record(children[0].pid if children else workers.pid)


async def profile_submit(spy: PySpy, rate: float, log_dir: Path) -> str:
    with deploy.opscore(log_dir) as system:
        system.start_api()
        await system.ready()
        await burst(system.submit_url, [deploy.HELLO] * submit.WARMUP, headers=system.headers)
        assert system.api is not None
        recording = asyncio.create_task(spy.record(system.api.pid))
        load = await fixed_rate(
            system.submit_url, deploy.HELLO, rate, spy.warmup + spy.seconds + 1, headers=system.headers
        )
        await recording
    return f"submit at {load.offered:.0f}/s: achieved {load.achieved:.1f}/s, latency {load.latency}"


async def run(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="opscore-profile-"))
    spy = PySpy(args.seconds, args.warmup, args.raw or log_dir / f"{args.scenario}.pyspy.txt")
    if args.scenario == "drain":
        found = await drain.measure(args.n, 1, log_dir, observer=spy.worker)
        outcome = f"drained {found.drain.steady_rate:.0f} tasks/s (steady)"
    elif args.scenario == "io":
        io = await io_bound.measure(args.n, args.concurrency, args.delay, log_dir, observer=spy.worker)
        outcome = f"I/O-bound {io.throughput:.0f} tasks/s of an ideal {io.ideal:.0f}, {io.max_running} in flight"
    else:
        outcome = await profile_submit(spy, args.rate, log_dir)
    print(outcome)
    print(spy.census)
    print(f"raw samples: {spy.raw}; process logs: {log_dir}\n")
    print(summarise(spy.raw, args.top))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("drain", "io", "submit"))
    parser.add_argument("--n", type=int, default=None, help="tasks (drain: 10000, io: 4000)")
    parser.add_argument("--concurrency", type=int, default=1000, help="io: runs in flight")
    parser.add_argument("--delay", type=float, default=5.0, help="io: seconds each model call waits")
    parser.add_argument("--rate", type=float, default=150.0, help="submit: offered requests per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to sample")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds between warm and sampling")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, default=None, help="where to keep py-spy's raw samples")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 10_000 if args.scenario == "drain" else 4_000
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
