"""Worker processes and the pool that supervises them.

A worker process is a Dramatiq worker (its threads only dispatch) plus a
:class:`~ops_core.runner.TaskRunner` on Dramatiq's asyncio loop thread, where
the agent runs live. ``run_pool`` starts N such processes, restarts any that
die, and passes SIGTERM on so each one hands back its unfinished runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import dramatiq
from dramatiq.asyncio import get_event_loop_thread

from ops_core.config import Settings
from ops_core.logs import configure_logging
from ops_core.queue.actors import DispatchRefused, declare_run_task
from ops_core.runner import TaskRunner
from ops_core.runtime import Runtime
from ops_core.services.execute import ExecutionContext, retry_policy
from ops_core.services.models import ModelCache

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = 1.0
GC_THRESHOLDS = (50_000, 50, 50)
RUNNER_READY_SECONDS = 30.0


class WorkerProcess:
    """One process's worth of workers; ``start`` and ``stop`` are called from the main thread."""

    def __init__(
        self, settings: Settings, *, threads: int, concurrency: int, broker: dramatiq.Broker | None = None
    ) -> None:
        self._settings = settings
        self._threads = threads
        self._concurrency = concurrency
        self._shared_broker = broker
        self._runtime: Runtime | None = None
        self._runner: TaskRunner | None = None
        self._worker: dramatiq.Worker | None = None
        self._models = ModelCache()

    @property
    def runner(self) -> TaskRunner:
        assert self._runner is not None, "start() first"
        return self._runner

    def start(self) -> None:
        runtime = Runtime.open(self._settings, broker=self._shared_broker)
        self._runtime = runtime
        declare_run_task(runtime.broker, self._settings.queue_name, self._dispatch)
        self._worker = dramatiq.Worker(runtime.broker, worker_threads=self._threads)
        self._worker.start()
        self._loop_thread().run_coroutine(self._start_runner(runtime))

    async def _start_runner(self, runtime: Runtime) -> None:
        # Built on the loop thread: asyncio primitives and the DB pool belong to that loop.
        ctx = ExecutionContext(
            store=runtime.store,
            registry=runtime.registry,
            models=self._models,
            settings=self._settings,
            republish=lambda task, delay: self.runner.republish(task, delay),
            policy=retry_policy(self._settings),
        )
        runner = TaskRunner(ctx, runtime.publisher, concurrency=self._concurrency)
        await runner.start()
        self._runner = runner
        log.info(
            "worker %s ready: %d threads, %d concurrent runs",
            runner.worker_id,
            self._threads,
            self._concurrency,
        )

    async def _dispatch(self, task_id: str) -> None:
        # Dramatiq's threads consume as soon as the worker starts, which is before the runner exists
        # (the runner needs the loop the worker's AsyncIO middleware starts). Wait for it briefly,
        # then hand the message back for a retry: a failure here must never dead-letter the task.
        deadline = time.monotonic() + RUNNER_READY_SECONDS
        while self._runner is None:
            if time.monotonic() > deadline:
                raise DispatchRefused("the worker's runner is not ready yet")
            await asyncio.sleep(0.05)
        await self._runner.dispatch(task_id)

    def stop(self) -> None:
        loop_thread = self._loop_thread()
        if self._runner is not None:
            loop_thread.run_coroutine(self._runner.shutdown(self._settings.shutdown_grace_seconds))
            loop_thread.run_coroutine(self._models.aclose())
        if self._runtime is not None:
            # On the loop its connections belong to, before the worker stops that loop: closed from
            # another loop, every pooled connection fails to close and is logged as an error. The
            # runner is shut down, so no dispatch touches the database any more.
            loop_thread.run_coroutine(self._runtime.engine.dispose())
        if self._worker is not None:
            self._worker.stop()

    @staticmethod
    def _loop_thread() -> dramatiq.asyncio.EventLoopThread:
        thread = get_event_loop_thread()
        if thread is None:
            raise RuntimeError("the AsyncIO middleware did not start an event loop")
        return thread


def run_worker_process(settings: Settings, threads: int, concurrency: int) -> None:
    """Run one worker process until SIGTERM or SIGINT."""
    configure_logging(settings.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = WorkerProcess(settings, threads=threads, concurrency=concurrency)
    worker.start()
    # What start-up built lives as long as the process: keep it out of the cyclic GC. A full
    # collection over it (~275k objects) pauses every run on the loop for ~180 ms on a small machine.
    gc.freeze()
    # A wave of runs allocates fast and frees almost all of it by refcount; at the default threshold
    # (700 allocations) the collector ran hundreds of times per wave. I/O-bound bench, 1,000 runs in
    # flight: span 32.7 / 32.9 s at the default vs 32.0 / 32.3 s at this one; drains unchanged.
    gc.set_threshold(*GC_THRESHOLDS)
    stop.wait()
    log.info("shutting down")
    worker.stop()


def run_pool(settings: Settings, processes: int, threads: int, concurrency: int | None = None) -> None:
    """Run ``processes`` worker processes, restarting any that die, until SIGTERM or SIGINT."""
    concurrency = concurrency or settings.worker_concurrency
    if processes == 1:
        run_worker_process(settings, threads, concurrency)
        return
    configure_logging(settings.log_level)
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def spawn() -> BaseProcess:
        child = context.Process(target=run_worker_process, args=(settings, threads, concurrency), daemon=False)
        child.start()
        return child

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children = [spawn() for _ in range(processes)]
    log.info("worker pool started: %d processes", processes)
    while not stopping.wait(0.5):
        for index, child in enumerate(children):
            if not child.is_alive():
                log.warning("worker process %s exited with %s; restarting it", child.pid, child.exitcode)
                time.sleep(RESTART_BACKOFF_SECONDS)
                children[index] = spawn()
    for child in children:
        if child.is_alive() and child.pid is not None:
            child.terminate()  # SIGTERM: the child hands back its runs within the grace period
    deadline = time.monotonic() + settings.shutdown_grace_seconds + 15
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            log.error("worker process %s did not stop in time; killing it", child.pid)
            child.kill()
