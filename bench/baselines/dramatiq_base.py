"""What the Dramatiq baselines share: the broker, a pre-filled backlog, and timing a drain by its workers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.baselines.env import WorkerConfig, process_env
from bench.procs import Command
from bench.progress import Drain, wait_drained
from ops_core.config import Settings

# `opscore worker`'s default, so every Dramatiq worker has the same thread count.
THREADS: int = Settings.model_fields["worker_threads"].default


def make_broker(amqp_url: str, *, confirm_delivery: bool = False) -> RabbitmqBroker:
    """Dramatiq's RabbitMQ broker with its default middleware: raw Dramatiq as most people run it."""
    return RabbitmqBroker(url=amqp_url, confirm_delivery=confirm_delivery)


def declare_actor(broker: dramatiq.Broker, fn: Callable[..., Any], name: str, queue: str) -> None:
    """Install ``broker`` for the ``dramatiq`` CLI and register ``fn`` on it, without retries (a failure must
    show as a stalled drain, not as a slower one)."""
    dramatiq.set_broker(broker)
    dramatiq.Actor(fn, broker=broker, actor_name=name, queue_name=queue, priority=0, options={"max_retries": 0})


def message(queue: str, actor_name: str, args: tuple[Any, ...]) -> dramatiq.Message[Any]:
    # Built by name so the sender needs no actor: like ops-core's API, it only publishes.
    return dramatiq.Message(queue_name=queue, actor_name=actor_name, args=args, kwargs={}, options={})


def enqueue_backlog(config: WorkerConfig, actor_name: str, args: Sequence[tuple[Any, ...]]) -> None:
    broker = make_broker(config.amqp_url)
    try:
        broker.declare_queue(config.queue)
        for each in args:
            broker.enqueue(message(config.queue, actor_name, each))
    finally:
        broker.close()


def start_workers(config: WorkerConfig, setup: str, processes: int, log_dir: Path, name: str) -> Command:
    """``dramatiq`` CLI worker processes; ``setup`` is a ``module:function`` that declares broker and actor."""
    # The broker argument comes first: ``--queues`` takes every argument after it.
    args = ["dramatiq", setup, "--processes", str(processes), "--threads", str(THREADS), "--queues", config.queue]
    return Command(name, args, process_env(config), log_dir).start()


async def time_drain(
    config: WorkerConfig, setup: str, count_sql: str, n: int, processes: int, log_dir: Path, name: str
) -> Drain:
    """Start the workers on a full queue and time them until ``count_sql`` reaches ``n``."""
    started = time.monotonic()
    workers = start_workers(config, setup, processes, log_dir, name)
    try:
        return await wait_drained(config.dsn, count_sql, n, processes=processes, started=started, alive=workers.alive)
    finally:
        workers.stop()
