"""Builds the Dramatiq broker from settings: RabbitMQ for ``amqp://``, in-process for ``memory://``.

Only the middleware ops-core relies on is installed. Dramatiq's defaults (20
retries with backoff up to a week, a 10-minute time limit, an age limit) would
fight the task's own ``max_retries`` and ``timeout_seconds``, which live in the
database and are enforced by the runner.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.asyncio import EventLoopThread, set_event_loop_thread
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, Retries

from ops_core.config import Settings
from ops_core.lifecycle import DISPATCH_MAX_BACKOFF_MS, DISPATCH_MAX_RETRIES, DISPATCH_MIN_BACKOFF_MS

RUN_TASK = "opscore.run_task"
MAX_PRIORITY = 9


# pika's defaults let a connect to a cut broker hang for tens of seconds.
_AMQP_DEFAULTS = {
    "socket_timeout": "5",
    "stack_timeout": "10",
    "blocked_connection_timeout": "30",
    "connection_attempts": "1",
    "heartbeat": "30",
}


def amqp_url_with_timeouts(url: str) -> str:
    """Add pika connection timeouts to ``url`` unless it already sets them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in _AMQP_DEFAULTS.items():
        query.setdefault(key, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


class UvloopAsyncIO(AsyncIO):
    """Dramatiq's AsyncIO middleware, with the loop thread running uvloop when it is installed.

    Every agent run of a worker process lives on this one loop, so its
    per-callback and per-socket overhead is paid per model call and per
    database statement (see docs/benchmarks.md for the effect).
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        thread = EventLoopThread(self.logger)
        # Stopped by after_worker_shutdown; if that never comes (a second Ctrl-C interrupting the
        # worker's stop), a non-daemon loop thread would keep the process alive forever.
        thread.daemon = True
        try:
            import uvloop
        except ImportError:  # Windows has no uvloop: keep the stock loop
            pass
        else:
            thread.loop.close()  # the stock loop the thread made, never run
            thread.loop = uvloop.new_event_loop()
        thread.start(timeout=1.0)
        set_event_loop_thread(thread)


def setup_broker(settings: Settings) -> dramatiq.Broker:
    """Build (but do not install globally) the broker ``settings`` describe."""
    middleware: list[dramatiq.Middleware] = [
        UvloopAsyncIO(),
        Retries(
            max_retries=DISPATCH_MAX_RETRIES,
            min_backoff=DISPATCH_MIN_BACKOFF_MS,
            max_backoff=DISPATCH_MAX_BACKOFF_MS,
        ),
    ]
    broker: dramatiq.Broker
    if settings.is_memory_broker:
        broker = StubBroker(middleware=middleware)
    else:
        broker = RabbitmqBroker(
            url=amqp_url_with_timeouts(settings.broker_url),
            middleware=middleware,
            max_priority=MAX_PRIORITY,
            confirm_delivery=True,
        )
    broker.declare_queue(settings.queue_name)
    return broker
