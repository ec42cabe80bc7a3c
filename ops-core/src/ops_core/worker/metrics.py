"""A worker process's Prometheus metrics: runs, queue lag, model calls, tool calls, retries, orphans.

They are kept only when the process belongs to a pool that serves them
(``OPSCORE_WORKER_METRICS_PORT``): the pool's supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` for its children, so prometheus-client writes
each process's values to files there and the supervisor serves their sum
(:mod:`ops_core.worker.pool_metrics`). Counters and histograms of a process
that died keep counting in the sum; the in-flight gauge is per live process
(a ``pid`` label).

Every label is bounded: agents and tools come from the agent registry (a tool
the model made up is counted as ``(unknown)``), models from the tasks' model
strings (``OPSCORE_ALLOWED_MODELS``), statuses and error kinds from fixed
sets. Labelled children are cached, as in :mod:`ops_core.api.metrics`:
``labels()`` takes a lock and builds a key on every call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN_TOOL = "(unknown)"

# Runs last from seconds to hours; model and tool calls from milliseconds to minutes.
RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, float("inf"))
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))

C = TypeVar("C")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A registry of its own, so tests and two runtimes in one process never share series. In
        # multiprocess mode the values also go to the pool's files, which is what is served.
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs_started = Counter("opscore_runs_started", "Attempts started, by agent.", ["agent"], registry=r)
        self.runs_finished = Counter(
            "opscore_runs_finished",
            "Attempts ended, by agent and outcome: completed, failed, cancelled, retrying, waiting,"
            " handed_back (at shutdown), lost (another worker owns the task now).",
            ["agent", "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "opscore_run_duration_seconds",
            "Time from an attempt's start to its end, by agent and outcome.",
            ["agent", "status"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "opscore_run_retries",
            "Attempts that failed and were scheduled to run again, by agent and error type.",
            ["agent", "error_type"],
            registry=r,
        )
        self.queue_lag = Histogram(
            "opscore_queue_lag_seconds",
            "Time from a task's submission to the claim of its first attempt, by agent.",
            ["agent"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "opscore_runs_in_flight",
            "Runs this worker process holds now.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.model_calls = Counter(
            "opscore_model_calls", "Model requests, by provider and model.", ["provider", "model"], registry=r
        )
        self.model_errors = Counter(
            "opscore_model_call_errors",
            "Model requests that failed (after agentkit's own retries), by provider, model and error kind.",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.model_latency = Histogram(
            "opscore_model_call_duration_seconds",
            "Time a model request took, by provider and model.",
            ["provider", "model"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.input_tokens = Counter(
            "opscore_model_input_tokens",
            "Input tokens of model requests, by provider and model.",
            ["provider", "model"],
            registry=r,
        )
        self.output_tokens = Counter(
            "opscore_model_output_tokens",
            "Output tokens of model requests, by provider and model.",
            ["provider", "model"],
            registry=r,
        )
        self.tool_calls = Counter("opscore_tool_calls", "Tool calls, by tool.", ["tool"], registry=r)
        self.tool_errors = Counter(
            "opscore_tool_call_errors",
            "Tool calls that ended in an error, by tool and kind (exception, timeout, retry, denied,"
            " invalid_arguments, unknown_tool).",
            ["tool", "kind"],
            registry=r,
        )
        self.tool_latency = Histogram(
            "opscore_tool_call_duration_seconds",
            "Time a tool call ran, by tool (calls that did not run are not timed).",
            ["tool"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.orphans_requeued = Counter(
            "opscore_orphans_requeued",
            "Runs of workers presumed dead (heartbeat older than a lease) that this worker requeued or failed.",
            registry=r,
        )
        self._children: dict[tuple[object, ...], object] = {}

    @classmethod
    def from_environment(cls) -> WorkerMetrics | None:
        """Metrics when this process's pool serves them (its supervisor set the multiprocess directory)."""
        return cls() if os.environ.get(MULTIPROC_DIR) else None

    def _child(self, key: tuple[object, ...], make: Callable[[], C]) -> C:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = make()
        return child  # type: ignore[return-value]

    def run_started(self, agent: str, queue_lag: float | None) -> None:
        self._child(("started", agent), lambda: self.runs_started.labels(agent)).inc()
        self.in_flight.inc()
        if queue_lag is not None:
            self._child(("lag", agent), lambda: self.queue_lag.labels(agent)).observe(max(0.0, queue_lag))

    def run_finished(self, agent: str, status: str, seconds: float, error_type: str | None) -> None:
        self.in_flight.dec()
        self._child(("finished", agent, status), lambda: self.runs_finished.labels(agent, status)).inc()
        self._child(("duration", agent, status), lambda: self.run_duration.labels(agent, status)).observe(seconds)
        if status == "retrying":
            kind = error_type or "unknown"
            self._child(("retry", agent, kind), lambda: self.retries.labels(agent, kind)).inc()

    def model_call(self, provider: str, model: str, seconds: float, input_tokens: int, output_tokens: int) -> None:
        self._child(("model", provider, model), lambda: self.model_calls.labels(provider, model)).inc()
        self._child(("model_s", provider, model), lambda: self.model_latency.labels(provider, model)).observe(seconds)
        if input_tokens:
            self._child(("in", provider, model), lambda: self.input_tokens.labels(provider, model)).inc(input_tokens)
        if output_tokens:
            self._child(("out", provider, model), lambda: self.output_tokens.labels(provider, model)).inc(output_tokens)

    def model_failed(self, provider: str, model: str, seconds: float, kind: str) -> None:
        self._child(("model", provider, model), lambda: self.model_calls.labels(provider, model)).inc()
        self._child(("model_s", provider, model), lambda: self.model_latency.labels(provider, model)).observe(seconds)
        self._child(("model_e", provider, model, kind), lambda: self.model_errors.labels(provider, model, kind)).inc()

    def tool_call(self, tool: str, seconds: float | None, error_kind: str | None) -> None:
        if error_kind == "unknown_tool":
            tool = UNKNOWN_TOOL  # the model's made-up name must not become a label
        self._child(("tool", tool), lambda: self.tool_calls.labels(tool)).inc()
        if seconds is not None:
            self._child(("tool_s", tool), lambda: self.tool_latency.labels(tool)).observe(seconds)
        if error_kind:
            self._child(("tool_e", tool, error_kind), lambda: self.tool_errors.labels(tool, error_kind)).inc()

    def orphans(self, count: int) -> None:
        if count:
            self.orphans_requeued.inc(count)
