"""``uv run python -m bench.batch_submit``: 1,000 tasks in one ``POST /v1/tasks/batch`` against 1,000 single submits.

Both through the SDK, against ``opscore dev`` (SQLite, in-process broker and
worker; ``--stack dev``) or ``opscore api`` on PostgreSQL and RabbitMQ (a
scratch database and queue, no workers; ``--stack pg``). The singles are sent
one after another (what a script or the CLI did) and also 32 at a time; the
three ways take turns for ``--rounds`` rounds. Printed, nothing written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port
from tests.support.waiting import wait_for_sync

from bench.pipeline import deploy
from ops_core.client import AsyncClient, Client

CONCURRENCY = 32


@contextlib.contextmanager
def dev_stack(log_dir: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSCORE_", "OPENAI_"))}
    env.update({"OPSCORE_DATABASE_URL": f"sqlite+aiosqlite:///{log_dir / 'dev.db'}", "PYTHONUNBUFFERED": "1"})
    dev = ManagedProcess("opscore-dev", ["dev", "--port", str(port)], env, log_dir).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_sync(lambda: _ready(url), bool, timeout=120, what="opscore dev ready")
        yield url, ""
    finally:
        dev.stop()


@contextlib.contextmanager
def pg_stack(log_dir: Path) -> Iterator[tuple[str, str]]:
    with deploy.opscore(log_dir) as system:
        system.start_api()
        asyncio.run(system.ready())
        yield system.submit_url.rsplit("/v1/", 1)[0], system.headers["Authorization"].removeprefix("Bearer ")


def _ready(url: str) -> bool:
    try:
        with Client(url, api_key="", timeout=2) as api:
            api.list_page(limit=1)
        return True
    except Exception:
        return False


def one_by_one(url: str, key: str, n: int, tag: str) -> float:
    with Client(url, api_key=key) as api:
        started = time.perf_counter()
        for i in range(n):
            api.submit(f"bench {tag} {i}")
        return time.perf_counter() - started


def concurrent(url: str, key: str, n: int, tag: str) -> float:
    async def go() -> float:
        limit = asyncio.Semaphore(CONCURRENCY)
        async with AsyncClient(url, api_key=key) as api:

            async def send(i: int) -> None:
                async with limit:
                    await api.submit(f"bench {tag} {i}")

            started = time.perf_counter()
            await asyncio.gather(*(send(i) for i in range(n)))
            return time.perf_counter() - started

    return asyncio.run(go())


def batch(url: str, key: str, n: int, tag: str) -> float:
    with Client(url, api_key=key, timeout=120) as api:
        started = time.perf_counter()
        result = api.submit_many({"goal": f"bench {tag} {i}"} for i in range(n))
        elapsed = time.perf_counter() - started
    assert result.created == n, result.rejected_items[:3]
    return elapsed


WAYS = {"singles, one by one": one_by_one, f"singles, {CONCURRENCY} at a time": concurrent, "one batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", choices=["dev", "pg"], default="dev")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="opscore-batch-"))
    stack = dev_stack if args.stack == "dev" else pg_stack
    times: dict[str, list[float]] = {name: [] for name in WAYS}
    with stack(log_dir) as (url, key):
        batch(url, key, 100, "warm-up")
        for round_ in range(args.rounds):
            for name, way in WAYS.items():
                times[name].append(way(url, key, args.n, f"r{round_}"))
    print(f"{args.n} tasks on {args.stack}, {args.rounds} rounds (seconds per round; tasks/s of the median)")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rounds = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"  {name:<24} {rounds:<24} median {median:6.2f} s  {args.n / median:8.0f} tasks/s")


if __name__ == "__main__":
    main()
