"""Baseline (c): Celery on the same RabbitMQ doing the same two UPDATEs per task, with psycopg.

Pool choice, and why it is fair: the prefork pool with ``--concurrency``
equal to the process count, so "2 processes" means two processes executing
tasks, as for Dramatiq and ops-core. Celery's thread pool would run in one
process under one GIL, and its gevent/eventlet pools need monkey-patching
that production Celery deployments of sync database code rarely use. Acks are
late (after the task), matching Dramatiq's at-least-once delivery; results and
events are off because ops-core's state lives in PostgreSQL, not a result backend.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from celery import Celery

from bench.baselines import table
from bench.baselines.env import WorkerConfig, process_env
from bench.procs import Command
from bench.progress import Drain, wait_drained

TASK = "bench.two_updates"
PREFETCH_MULTIPLIER = 4  # Celery's default

# One connection per prefork child, opened in the child on its first task (never shared over fork).
_connection: psycopg.Connection[tuple[object, ...]] | None = None


def _conn(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(dsn, autocommit=True)
    return _connection


def make_app(config: WorkerConfig) -> Celery:
    app = Celery("bench", broker=config.amqp_url, set_as_current=False)
    app.conf.update(
        task_default_queue=config.queue,
        task_acks_late=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        worker_enable_remote_control=False,  # no pidbox queues left behind on the shared broker
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name=TASK)  # type: ignore[untyped-decorator]  # celery ships no type hints
    def two_updates(row_id: int) -> None:
        conn = _conn(config.dsn)
        conn.execute(table.MARK_RUNNING, (row_id,))
        conn.execute(table.MARK_COMPLETED, (row_id,))

    return app


def enqueue_backlog(config: WorkerConfig, n: int) -> None:
    app = make_app(config)
    with app.producer_or_acquire() as producer:
        for row_id in range(1, n + 1):
            app.send_task(TASK, args=(row_id,), producer=producer)
    app.close()


def start_workers(config: WorkerConfig, processes: int, log_dir: Path) -> Command:
    args = [
        "celery",
        "--app",
        "bench.baselines.celery_worker",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(processes),
        "--queues",
        config.queue,
        "--loglevel",
        "WARNING",
        # Cluster chatter the other baselines do not have.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return Command(f"celery-{processes}p", args, process_env(config), log_dir).start()


async def measure(config: WorkerConfig, n: int, processes: int, log_dir: Path) -> Drain:
    await table.reset(config.dsn, backlog=n)
    enqueue_backlog(config, n)
    started = time.monotonic()
    workers = start_workers(config, processes, log_dir)
    try:
        return await wait_drained(
            config.dsn,
            table.COUNT_COMPLETED,
            n,
            processes=processes,
            started=started,
            alive=workers.alive,
        )
    finally:
        workers.stop()
