"""Baseline (b), the floor: raw Dramatiq plus the minimal durable work, two status UPDATEs per task.

An async actor (AsyncIO middleware) with one asyncpg pool per worker process,
the same shape as an ops-core worker with none of its bookkeeping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from dramatiq import Middleware
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread
from dramatiq.middleware import AsyncIO

from bench.baselines import table
from bench.baselines.dramatiq_base import declare_actor, enqueue_backlog, make_broker, time_drain
from bench.baselines.env import WorkerConfig
from bench.progress import Drain

ACTOR = "bench.two_updates"
POOL_SIZE = 10  # OPSCORE_DB_POOL_SIZE's default

_pool: asyncpg.Pool | None = None


class AsyncpgPool(Middleware):
    """Opens the process's pool on the AsyncIO middleware's loop, where the actors will use it.

    ``before_worker_boot`` runs after AsyncIO's (which starts the loop) and before
    the worker threads consume, so no message can find the pool missing. The pool
    is not closed at shutdown: its connections end with the process, and an
    awaited close there held worker exit up until it was killed.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        _loop_thread().run_coroutine(self._open())

    async def _open(self) -> None:
        global _pool
        _pool = await asyncpg.create_pool(self._dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)


def _loop_thread() -> EventLoopThread:
    thread = get_event_loop_thread()
    assert thread is not None, "the AsyncIO middleware is installed before AsyncpgPool"
    return thread


async def two_updates(row_id: int) -> None:
    assert _pool is not None, "the AsyncpgPool middleware opens the pool at worker boot"
    await _pool.execute(table.numbered(table.MARK_RUNNING), row_id)
    await _pool.execute(table.numbered(table.MARK_COMPLETED), row_id)


def setup() -> None:
    """Entry point for the ``dramatiq`` CLI in each worker process."""
    config = WorkerConfig.from_env()
    broker = make_broker(config.amqp_url)
    broker.add_middleware(AsyncIO())
    broker.add_middleware(AsyncpgPool(config.dsn))  # after AsyncIO, whose loop it needs
    declare_actor(broker, two_updates, ACTOR, config.queue)


SETUP = f"{__name__}:setup"


async def measure(config: WorkerConfig, n: int, processes: int, log_dir: Path) -> Drain:
    await table.reset(config.dsn, backlog=n)
    enqueue_backlog(config, ACTOR, [(row_id,) for row_id in range(1, n + 1)])
    return await time_drain(config, SETUP, table.COUNT_COMPLETED, n, processes, log_dir, f"dramatiq-pg-{processes}p")
