"""One attempt's metrics and spans, made from what the run reports.

:class:`~ops_core.worker.execute.Execution` calls :meth:`RunTelemetry.started`
when an attempt starts, passes on every run event (the same ones the
recorder stores), calls :meth:`RunTelemetry.finished` with the attempt's
outcome and :meth:`RunTelemetry.closed` when it is over. Model calls are
timed from their ``model_request`` to their ``model_response`` event, tool
calls by agentkit (``duration_seconds`` of ``tool_result``). An execution has
no telemetry at all (``None``) when neither metrics nor tracing is on, so a
plain worker pays one ``is None`` test per hook.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentkit import RunEvent, RunEventType
from ops_core.db.models import Claim
from ops_core.worker.metrics import WorkerMetrics

if TYPE_CHECKING:
    from ops_core.task_traces import RunTrace, TaskTracing

# Why an attempt ended when no outcome was recorded: shutdown handed it back, or it lost its lease.
HANDED_BACK = "handed_back"
LOST = "lost"
# A model call still open when the run ended (timeout, cancel, shutdown).
INTERRUPTED = "interrupted"


def error_kind(payload: dict[str, Any]) -> str:
    """A model failure's kind: agentkit's cause (ModelRateLimitError → rate_limit), else the run error's kind."""
    cause = payload.get("cause")
    if isinstance(cause, str) and cause.startswith("Model") and cause.endswith("Error"):
        words = cause[len("Model") : -len("Error")]
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in words).lstrip("_") or "model_error"
    return str(payload.get("kind", "error"))


class RunTelemetry:
    def __init__(self, claim: Claim, queue: str, metrics: WorkerMetrics | None, tracing: TaskTracing | None) -> None:
        self._task = claim.task
        self._attempt = claim.attempt
        self._queue = queue
        self._metrics = metrics
        self._tracing = tracing
        self._trace: RunTrace | None = None
        self._started = 0.0
        self._status: str | None = None
        self._error_type: str | None = None
        # The open model call: (provider, model, started on the monotonic clock).
        self._model: tuple[str, str, float] | None = None

    def started(self) -> None:
        self._started = time.monotonic()
        if self._tracing is not None:
            self._trace = self._tracing.run(self._task.id, self._attempt, self._task.agent, self._queue)
        if self._metrics is not None:
            self._metrics.run_started(self._task.agent, self._queue_lag())

    def _queue_lag(self) -> float | None:
        """Submission to claim, for a first attempt (later ones wait on purpose: retry backoff)."""
        task = self._task
        if self._attempt != 1 or task.claimed_at is None:
            return None
        return (task.claimed_at - task.created_at).total_seconds()

    def on_event(self, event: RunEvent) -> None:
        payload = event.payload
        match event.type:
            case RunEventType.MODEL_REQUEST:
                self._model_request(event.timestamp, event.step, str(payload.get("model", self._task.model)))
            case RunEventType.MODEL_RESPONSE:
                self._model_response(event.timestamp, payload)
            case RunEventType.TOOL_RESULT:
                self._tool_result(event.timestamp, payload)
                return  # not a mark: the step's other results follow from the same start
            case RunEventType.ERROR if self._model is not None:
                self._model_failed(event.timestamp, error_kind(payload))
        if self._trace is not None:
            self._trace.mark(event.timestamp)

    def _model_request(self, when: datetime, step: int, model: str) -> None:
        provider, _, name = model.partition(":")
        self._model = (provider, name, time.monotonic())
        if self._trace is not None:
            self._trace.model_request(when, step, model)

    def _model_response(self, when: datetime, payload: dict[str, Any]) -> None:
        if self._model is None:
            return
        provider, name, started = self._model
        self._model = None
        usage = payload.get("usage") or {}
        input_tokens = int(usage.get("input_tokens") or 0)
        output_tokens = int(usage.get("output_tokens") or 0)
        if self._metrics is not None:
            self._metrics.model_call(provider, name, time.monotonic() - started, input_tokens, output_tokens)
        if self._trace is not None:
            finish = payload.get("finish_reason")
            self._trace.model_response(
                when, str(payload.get("model") or name), str(finish) if finish else None, input_tokens, output_tokens
            )

    def _model_failed(self, when: datetime | None, kind: str) -> None:
        if self._model is None:
            return
        provider, name, started = self._model
        self._model = None
        if self._metrics is not None:
            self._metrics.model_failed(provider, name, time.monotonic() - started, kind)
        if self._trace is not None:
            self._trace.model_failed(when, kind)

    def _tool_result(self, when: datetime, payload: dict[str, Any]) -> None:
        name = str(payload.get("name", ""))
        kind = payload.get("error_kind") if payload.get("is_error") else None
        seconds = payload.get("duration_seconds")
        duration = float(seconds) if isinstance(seconds, int | float) else None
        if self._metrics is not None:
            self._metrics.tool_call(name, duration, str(kind) if kind else None)
        if self._trace is not None:
            self._trace.tool_result(when, name, str(payload.get("id", "")), str(kind) if kind else None, duration)

    def finished(self, status: str, error_type: str | None) -> None:
        """The attempt's outcome: the task's status after it (``pending`` after a failure is ``retrying``)."""
        self._status = "retrying" if status == "pending" else status
        self._error_type = error_type

    def closed(self, interrupted: bool = False) -> None:
        """The attempt is over; ``interrupted``: stopped from outside (shutdown) before any outcome."""
        self._model_failed(None, INTERRUPTED)
        status = self._status or (HANDED_BACK if interrupted else LOST)
        if self._metrics is not None:
            self._metrics.run_finished(self._task.agent, status, time.monotonic() - self._started, self._error_type)
        if self._trace is not None:
            error = self._error_type if status in ("failed", "retrying") else None
            self._trace.end(status, error)
