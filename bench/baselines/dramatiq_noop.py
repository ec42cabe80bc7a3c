"""Baseline (a): raw Dramatiq, a no-op actor draining a pre-filled backlog.

The actor does nothing, so completion is counted in memory by a middleware and
added to a counter row every few milliseconds; the actor itself never waits on
the database and the figure is Dramatiq's own ceiling.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
from dramatiq import Middleware

from bench.baselines import table
from bench.baselines.dramatiq_base import declare_actor, enqueue_backlog, make_broker, time_drain
from bench.baselines.env import WorkerConfig
from bench.progress import Drain

ACTOR = "bench.noop"
FLUSH_SECONDS = 0.02


class CompletionCounter(Middleware):
    """Counts processed messages and adds them to ``bench_counter`` from one background thread."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name="completion-counter", daemon=True)

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        with self._lock:
            self._done += 1

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._thread.start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _take(self) -> int:
        with self._lock:
            done, self._done = self._done, 0
        return done

    def _flush_loop(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while not self._stop.wait(FLUSH_SECONDS):
                if done := self._take():
                    conn.execute(table.ADD_TO_COUNTER, (done,))
            if done := self._take():
                conn.execute(table.ADD_TO_COUNTER, (done,))


def noop() -> None:
    """Nothing at all."""


def setup() -> None:
    """Entry point for the ``dramatiq`` CLI in each worker process."""
    config = WorkerConfig.from_env()
    broker = make_broker(config.amqp_url)
    broker.add_middleware(CompletionCounter(config.dsn))
    declare_actor(broker, noop, ACTOR, config.queue)


SETUP = f"{__name__}:setup"


async def measure(config: WorkerConfig, n: int, processes: int, log_dir: Path) -> Drain:
    await table.reset(config.dsn)
    enqueue_backlog(config, ACTOR, [() for _ in range(n)])
    return await time_drain(config, SETUP, table.COUNTER, n, processes, log_dir, f"noop-{processes}p")
