"""The worker pool's one scrape endpoint: the sum of every worker process's metrics, served by the supervisor.

prometheus-client's multiprocess mode: the supervisor makes a private
directory and names it in ``PROMETHEUS_MULTIPROC_DIR`` before it starts any
child, so each child's prometheus-client writes its values to files there
(:mod:`ops_core.worker.metrics`). The supervisor's HTTP server reads them all
at each scrape and adds them up. When a child dies, its per-process gauge
(runs in flight) is dropped with ``mark_process_dead``; its counters and
histograms stay in the sum, as a counter must. The directory is removed when
the pool stops; a new pool starts from an empty one, so counters restart at
zero like any process's (Prometheus's ``rate`` and ``increase`` expect that).

The supervisor's own series, worker processes lost, is kept in memory by a
collector of its own: it must not depend on whether prometheus-client was
imported before the directory was named.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from ops_core.config import Settings
from ops_core.errors import ConfigError
from ops_core.worker.metrics import MULTIPROC_DIR
from ops_core.worker.watchdog import EXIT_LOOP_STALLED

log = logging.getLogger(__name__)


def lost_reason(exitcode: int | None) -> str:
    """A bounded label for how a process ended: ``signal`` (SIGKILL, OOM killer, segfault), ``stalled``, ``exited``."""
    if exitcode is not None and exitcode < 0:
        return "signal"
    if exitcode == EXIT_LOOP_STALLED:
        return "stalled"
    return "exited"


class _LostProcesses(Collector):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, reason: str) -> None:
        with self._lock:
            self.counts[reason] += 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "opscore_worker_processes_lost",
            "Worker processes of this pool that died and were restarted, by reason: signal (killed,"
            " the OOM killer, a crash), stalled (its event loop stopped turning), exited.",
            labels=["reason"],
        )
        with self._lock:
            for reason, count in sorted(self.counts.items()):
                family.add_metric([reason], count)
        yield family


class PoolMetrics:
    def __init__(self, directory: str, server: WSGIServer, thread: threading.Thread, lost: _LostProcesses) -> None:
        self.directory = directory
        self.port = server.server_port
        self._server = server
        self._thread = thread
        self._lost = lost

    @classmethod
    def start(cls, settings: Settings) -> PoolMetrics:
        """Name the directory for the children to come, and serve the sum on OPSCORE_WORKER_METRICS_PORT."""
        assert settings.worker_metrics_port is not None, "only when the pool serves metrics"
        directory = tempfile.mkdtemp(prefix="opscore-metrics-")
        os.environ[MULTIPROC_DIR] = directory  # inherited by every child the supervisor spawns
        lost = _LostProcesses()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        registry.register(lost)
        host, port = settings.worker_metrics_host, settings.worker_metrics_port
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise ConfigError(
                f"OPSCORE_WORKER_METRICS_PORT={port} (OPSCORE_WORKER_METRICS_HOST={host}): cannot listen: {exc}"
            ) from exc
        log.info("worker metrics (all processes of this pool) at http://%s:%d/metrics", host, server.server_port)
        return cls(directory, server, thread, lost)

    def process_died(self, pid: int | None, exitcode: int | None) -> None:
        """A child died (not at the pool's stop): count it, and drop its runs-in-flight gauge."""
        self._lost.add(lost_reason(exitcode))
        if pid is not None:
            mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)
        os.environ.pop(MULTIPROC_DIR, None)
