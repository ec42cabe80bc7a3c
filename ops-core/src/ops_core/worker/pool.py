"""``opscore worker``: a supervisor that runs N worker processes, at every N, and keeps them running.

The worker never runs in the supervisor's own process, not even for
``--processes 1``: a tool that kills its process (``os._exit``, a segfault,
the OOM killer) or a loop the watchdog gives up on would otherwise take the
whole worker down, with nothing to start it again. Here the supervisor
notices the exit, starts a replacement (after a backoff that grows while
processes keep dying young), and the reaper of a live worker requeues the
runs the dead one held. SIGTERM and SIGINT are passed on, so each process
hands back its unfinished runs.

With ``OPSCORE_WORKER_METRICS_PORT`` set, the supervisor also serves the
metrics of all its processes, added up (:mod:`ops_core.worker.pool_metrics`),
and counts the processes it lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from ops_core import tracing
from ops_core.config import Settings
from ops_core.errors import ConfigError
from ops_core.logs import configure_logging
from ops_core.worker.watchdog import EXIT_LOOP_STALLED

if TYPE_CHECKING:
    from ops_core.worker.pool_metrics import PoolMetrics

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = 1.0
RESTART_BACKOFF_MAX_SECONDS = 30.0
# A process that lived this long was healthy: its death does not make the next restart wait longer.
STABLE_AFTER_SECONDS = 60.0
POLL_SECONDS = 0.2
STOP_MARGIN_SECONDS = 15.0
EXIT_BAD_CONFIG = 2

Lost = Callable[[int | None, int | None], None]


@dataclass
class _Slot:
    process: BaseProcess | None
    started: float
    failures: int = 0
    restart_at: float | None = None


def restart_delay(failures: int) -> float:
    """Backoff before restarting a process that died after ``failures`` short lives in a row."""
    return float(min(RESTART_BACKOFF_MAX_SECONDS, RESTART_BACKOFF_SECONDS * 2.0 ** max(0, failures - 1)))


def run_pool(settings: Settings, processes: int, threads: int, concurrency: int | None = None) -> None:
    """Supervise ``processes`` worker processes until SIGTERM or SIGINT."""
    concurrency = concurrency or settings.worker_concurrency
    configure_logging(settings.log_level)
    try:
        tracing.exporter_names()  # a bad OTEL_* value stops the pool here, not each child it would restart
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(EXIT_BAD_CONFIG) from None
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    received: list[int] = []

    def spawn() -> BaseProcess:
        child = context.Process(
            target=_worker_main, args=(settings, threads, concurrency), daemon=False, name="opscore-worker"
        )
        child.start()
        return child

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Before the first child: the children find their metrics directory in the environment they inherit.
    metrics = _pool_metrics(settings)
    lost = metrics.process_died if metrics is not None else None
    try:
        slots = [_Slot(spawn(), time.monotonic()) for _ in range(processes)]
        log.info("worker pool started: %d processes", processes)
        while not stopping.wait(POLL_SECONDS):
            now = time.monotonic()
            for slot in slots:
                _supervise(slot, now, spawn, lost)
        _stop_all(slots, received[0] if received else signal.SIGTERM, settings.shutdown_grace_seconds)
    finally:
        if metrics is not None:
            metrics.close()


def _pool_metrics(settings: Settings) -> PoolMetrics | None:
    if settings.worker_metrics_port is None:
        return None
    # Imported only here: a pool that serves no metrics keeps its supervisor small.
    from ops_core.worker.pool_metrics import PoolMetrics

    return PoolMetrics.start(settings)


def _worker_main(settings: Settings, threads: int, concurrency: int) -> None:
    # Imported in the child only: the supervisor stays a small process that never loads the worker's
    # stack (SQLAlchemy, Dramatiq, agentkit, the provider SDKs).
    from ops_core.worker.process import run_worker_process

    run_worker_process(settings, threads, concurrency)


def _supervise(slot: _Slot, now: float, spawn: Callable[[], BaseProcess], lost: Lost | None = None) -> None:
    """Restart the slot's process if it died, once its backoff has passed; ``lost`` hears of each death."""
    process = slot.process
    if process is not None and process.is_alive():
        return
    if process is not None:
        lived = now - slot.started
        slot.failures = 1 if lived >= STABLE_AFTER_SECONDS else slot.failures + 1
        delay = restart_delay(slot.failures)
        log.warning(
            "worker process %s exited with %s after %.0fs; restarting it in %.1fs",
            process.pid,
            _describe_exit(process.exitcode),
            lived,
            delay,
            extra={"pid": process.pid, "exitcode": process.exitcode, "restart_in_seconds": delay},
        )
        if lost is not None:
            lost(process.pid, process.exitcode)
        process.close()
        slot.process = None
        slot.restart_at = now + delay
    if slot.restart_at is not None and now >= slot.restart_at:
        slot.process = spawn()
        slot.started = now
        slot.restart_at = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    if code == EXIT_LOOP_STALLED:
        return f"code {code} (its event loop stalled)"
    return f"code {code}"


def _stop_all(slots: list[_Slot], signum: int, grace_seconds: float) -> None:
    children = [slot.process for slot in slots if slot.process is not None]
    for child in children:
        if child.is_alive() and child.pid is not None:
            # The child hands back its runs within the grace period.
            os.kill(child.pid, signum)
    deadline = time.monotonic() + grace_seconds + STOP_MARGIN_SECONDS
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            log.error("worker process %s did not stop in time; killing it", child.pid)
            child.kill()
            child.join(timeout=5)
