"""``uv run python -m bench.ratelimit_cost``: the CPU a worker process spends on the shared rate limiter.

One process, the real limiter on a scratch PostgreSQL database, a limit far above the
load (``offline rpm=1e9 tpm=1e12``), and ``--in-flight`` runs each asking for one model
call after another (acquire, then settle a usage below the estimate), as a draining
worker's runs do. It prints the calls per second, the process's CPU time per call and
how many calls one database transaction carried. CPU time per call, unlike throughput on
a shared machine, hardly moves when other work competes for the cores; compare it with
the drain's CPU per task (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from agentkit.models.gcra import RateLimit
from bench import services
from ops_core.config import Settings
from ops_core.db import migrate
from ops_core.db.engine import create_engine
from ops_core.db.ratelimits import RateLimitStore
from ops_core.ratelimits import SharedRateLimiter

MODEL = "offline:default"
ESTIMATE, USED = 600, 30


async def measure(url: str, calls: int, in_flight: int) -> str:
    engine = create_engine(Settings(database_url=url, db_pool_size=10))
    store = RateLimitStore(engine)
    limiter = SharedRateLimiter(store, {"offline": RateLimit(rpm=1e9, tpm=1e12)})
    transactions = 0
    apply = store.apply

    async def counted(*args: Any, **kwargs: Any) -> list[float]:
        nonlocal transactions
        transactions += 1
        return await apply(*args, **kwargs)

    store.apply = counted  # type: ignore[method-assign]
    await limiter.acquire(MODEL, 1)  # the row exists and the statements are prepared before timing
    left = calls

    async def run() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if await limiter.acquire(MODEL, ESTIMATE) != 0.0:
                raise RuntimeError("a limit far above the load made a call wait")
            await asyncio.sleep(0)  # the model answers
            await limiter.settle(MODEL, ESTIMATE, USED)

    transactions = 0
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        await asyncio.gather(*(run() for _ in range(in_flight)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await limiter.aclose()
        await engine.dispose()
    return (
        f"{in_flight} in flight: {calls / wall:,.0f} calls/s, {cpu / calls * 1e6:.1f} µs CPU per call,"
        f" {calls / max(transactions, 1):.1f} calls per transaction"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, action="append", help="runs at once (repeatable; default 1, 10, 100)")
    args = parser.parse_args()
    with services.scratch_database() as url:
        migrate.upgrade(url)
        for in_flight in args.in_flight or [1, 10, 100]:
            print(asyncio.run(measure(url, args.calls, in_flight)), flush=True)


if __name__ == "__main__":
    main()
