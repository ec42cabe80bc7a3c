"""One worker process: a Dramatiq worker (its threads only dispatch) plus the runner on its asyncio loop.

:class:`WorkerProcess` wires them together; the runner is started and stopped
by :class:`~ops_core.worker.middleware.RunnerMiddleware` from Dramatiq's own
hooks. :func:`run_worker_process` is what the pool runs in each child;
``opscore dev`` uses :class:`WorkerProcess` in its single process.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from types import FrameType

import dramatiq

from agentkit.mcp import McpSessions
from ops_core import tracing
from ops_core.config import Settings
from ops_core.db.ratelimits import RateLimitStore
from ops_core.lifecycle import RetryPolicy
from ops_core.live import LiveBuffer, LiveBus
from ops_core.logs import configure_logging
from ops_core.mcp_client import mcp_environment
from ops_core.queue.actors import DispatchRefused, declare_run_task
from ops_core.queue.broker import UvloopAsyncIO
from ops_core.ratelimits import SharedRateLimiter
from ops_core.runtime import Runtime
from ops_core.worker.execute import ExecutionContext
from ops_core.worker.metrics import WorkerMetrics
from ops_core.worker.middleware import RunnerMiddleware, RunnerStartFailed
from ops_core.worker.models import ModelCache, expected_providers, preload_sdks
from ops_core.worker.remote import RemoteAgents
from ops_core.worker.runner import TaskRunner

log = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 50, 50)
EXIT_START_FAILED = 1


class WorkerProcess:
    """One process's worth of workers; ``start`` and ``stop`` are called from the main thread.

    ``supervised``: a pool's child, which a supervisor restarts. Only then does
    the loop watchdog end the process when its loop stalls (see
    :mod:`ops_core.worker.watchdog`); under ``opscore dev`` it only logs.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        threads: int,
        concurrency: int,
        broker: dramatiq.Broker | None = None,
        live: LiveBus | None = None,
        supervised: bool = True,
    ) -> None:
        self._settings = settings
        self._threads = threads
        self._concurrency = concurrency
        self._shared_broker = broker
        self._shared_live = live
        self._supervised = supervised
        self._runtime: Runtime | None = None
        self._runner: TaskRunner | None = None
        self._worker: dramatiq.Worker | None = None
        self._models = ModelCache()
        # One per process: in multiprocess mode two would overwrite each other's values in its files.
        self._metrics = WorkerMetrics.from_environment()
        self._rate_limiter: SharedRateLimiter | None = None
        self._remote: RemoteAgents | None = None
        self._mcp: McpSessions | None = None

    @property
    def runner(self) -> TaskRunner:
        assert self._runner is not None, "start() first"
        return self._runner

    def start(self) -> None:
        runtime = Runtime.open(self._settings, broker=self._shared_broker, live=self._shared_live)
        self._runtime = runtime
        agent_models = [runtime.registry.get(name).model for name in runtime.registry.names()]
        preload_sdks(expected_providers(self._settings.default_model, agent_models))
        declare_run_task(runtime.broker, self._settings.queue_name, self._dispatch)
        runtime.broker.add_middleware(RunnerMiddleware(self._start_runner, self._stop_runner), after=UvloopAsyncIO)
        self._worker = dramatiq.Worker(runtime.broker, worker_threads=self._threads)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    async def _start_runner(self) -> None:
        # On the loop thread: asyncio primitives and the DB pool belong to that loop.
        runtime = self._runtime
        assert runtime is not None
        limits = self._settings.provider_rate_limits
        if limits:
            self._rate_limiter = SharedRateLimiter(RateLimitStore(runtime.engine), limits)
            self._models = ModelCache(rate_limiter=self._rate_limiter)
        self._remote = RemoteAgents(
            runtime.store,
            runtime.remote_agents,
            self._settings,
            policy=RetryPolicy.from_settings(self._settings),
            republish=lambda task, delay: self.runner.republish(task, delay),
        )
        ctx = ExecutionContext(
            store=runtime.store,
            registry=runtime.registry,
            models=self._models,
            settings=self._settings,
            republish=lambda task, delay: self.runner.republish(task, delay),
            policy=RetryPolicy.from_settings(self._settings),
            quotas=runtime.quotas,
            approvals=runtime.approvals,
            live=LiveBuffer(runtime.live),
            metrics=self._metrics,
            tracing=tracing.active(),
            mcp=self._mcp_sessions(),
            workflows=runtime.workflows,
            remote=self._remote,
        )
        runner = TaskRunner(ctx, runtime.publisher, concurrency=self._concurrency, exit_on_stall=self._supervised)
        await runner.start()
        self._runner = runner
        log.info(
            "worker %s ready: %d threads, %d concurrent runs",
            runner.worker_id,
            self._threads,
            self._concurrency,
        )

    def _mcp_sessions(self) -> McpSessions:
        # One connection per MCP server for the whole process, opened by the first run that needs it.
        self._mcp = McpSessions(mcp_environment(self._settings))
        return self._mcp

    async def _stop_runner(self) -> None:
        if self._runner is not None:
            await self._runner.shutdown(self._settings.shutdown_grace_seconds)
        if self._mcp is not None:
            await self._mcp.aclose()
        await self._models.aclose()
        if self._remote is not None:
            await self._remote.aclose()
        if self._rate_limiter is not None:
            await self._rate_limiter.aclose()
        if self._runtime is not None:
            # On the loop its connections belong to: closed from another loop, every pooled
            # connection fails to close and is logged as an error.
            await self._runtime.close()

    async def _dispatch(self, task_id: str) -> None:
        # The middleware builds the runner before Dramatiq starts consuming, so it is always there.
        if self._runner is None:
            raise DispatchRefused("the worker's runner is not running")
        await self._runner.dispatch(task_id)


def run_worker_process(settings: Settings, threads: int, concurrency: int) -> None:
    """Run one worker process until SIGTERM or SIGINT (the pool's child)."""
    configure_logging(settings.log_level)
    tracing.configure("opscore-worker")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = WorkerProcess(settings, threads=threads, concurrency=concurrency)
    try:
        worker.start()
    except RunnerStartFailed as exc:
        # One line, not a traceback: the supervisor restarts the process after a backoff.
        log.error("%s", exc)
        raise SystemExit(EXIT_START_FAILED) from None
    # What start-up built lives as long as the process: keep it out of the cyclic GC. A full
    # collection over it (~275k objects) pauses every run on the loop for ~180 ms on a small machine.
    gc.freeze()
    # A wave of runs allocates fast and frees almost all of it by refcount; at the default threshold
    # (700 allocations) the collector ran hundreds of times per wave. I/O-bound bench, 1,000 runs in
    # flight: span 32.7 / 32.9 s at the default vs 32.0 / 32.3 s at this one; drains unchanged.
    gc.set_threshold(*GC_THRESHOLDS)
    stop.wait()
    log.info("stopping: handing back what does not finish within %.0fs", settings.shutdown_grace_seconds)
    worker.stop()
