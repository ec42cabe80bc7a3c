"""Ties the runner's life to a Dramatiq worker's, through Dramatiq's own middleware hooks.

Hook order in Dramatiq 2.x (``dramatiq/worker.py``), and why these hooks:

* ``Worker.start`` emits ``before_worker_boot`` (middleware in list order),
  then adds its consumer and dispatch threads, which start consuming at once,
  and only then emits ``after_worker_boot``. So ``after_worker_boot`` would be
  too late: a message could reach the actor before the runner exists. The
  runner is built in ``before_worker_boot`` instead; this middleware sits after
  the AsyncIO middleware (:class:`~ops_core.queue.broker.UvloopAsyncIO`), whose
  ``before_worker_boot`` has started the loop by then. When it returns, the
  runner is registered and its duties run: the first message finds it ready.
* ``Worker.stop`` emits ``before_worker_shutdown`` while every thread and the
  loop still run; the runner shuts down there (it refuses new dispatches,
  lets runs finish for the grace period, hands the rest back, deregisters),
  then closes the models and the runtime (publisher, engine) on the loop
  their connections belong to. The AsyncIO middleware stops the loop only in
  ``after_worker_shutdown``, after Dramatiq has joined its threads.

A failure to start (the database unreachable) is raised as a
:class:`~dramatiq.middleware.MiddlewareError`, which Dramatiq lets out of
``Worker.start``; any other exception it would only log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread
from dramatiq.middleware import MiddlewareError

log = logging.getLogger(__name__)


class RunnerStartFailed(MiddlewareError):
    """The worker's runner could not start; the worker must not consume."""


class RunnerMiddleware(dramatiq.Middleware):
    def __init__(self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
        self._start = start
        self._stop = stop
        self._started = False

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        try:
            _loop_thread().run_coroutine(self._start())
        except Exception as exc:
            raise RunnerStartFailed(f"the worker could not start: {exc}") from exc
        self._started = True

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not self._started:
            return
        self._started = False
        _loop_thread().run_coroutine(self._stop())


def _loop_thread() -> EventLoopThread:
    thread = get_event_loop_thread()
    if thread is None:
        raise RuntimeError("the AsyncIO middleware must come before the runner's in the broker's middleware")
    return thread
