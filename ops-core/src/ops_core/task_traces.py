"""The spans of a task's trace: its submission (the root), each attempt's run, each model and tool call.

Only imported when tracing is on (see :mod:`ops_core.tracing`, which also
says how a task's trace context travels). The tree, for a task that made one
model call, one tool call and a final answer, retried once::

    submit default                    PRODUCER   (API; trace id = task id)
    ├── invoke_agent default          CONSUMER   (worker, attempt 1: error.type = model_failed)
    │   └── chat gpt-4o-mini          CLIENT
    └── invoke_agent default          CONSUMER   (attempt 2)
        ├── chat gpt-4o-mini          CLIENT
        ├── execute_tool calculator   INTERNAL
        └── chat gpt-4o-mini          CLIENT

Model and tool spans follow OpenTelemetry's GenAI semantic conventions. They
are built from the run's events (:class:`agentkit.RunEvent`) with the events'
own times, so agentkit knows nothing of OpenTelemetry. Spans carry no
prompts, answers, tool arguments or results: those stay in the task's events,
behind its tenant's keys.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ops_core.tracing import exporter_names, trace_ids

TRACER_NAME = "ops_core"
QUEUE_SYSTEM = "rabbitmq"

# Set while the submission span starts, so that it gets the ids derived from the task id.
_FORCED_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("opscore_forced_ids", default=None)


class _TaskIds(RandomIdGenerator):
    """Random ids, except for a task's root span: trace id and span id derived from the task id."""

    def generate_trace_id(self) -> int:
        forced = _FORCED_IDS.get()
        return forced[0] if forced is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _FORCED_IDS.get()
        return forced[1] if forced is not None else super().generate_span_id()


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


def task_context(task_id: UUID) -> Context:
    """A context whose parent is the task's root span, wherever that span was made."""
    trace_id, span_id = trace_ids(task_id)
    root = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(root))


def split_model(model: str) -> tuple[str, str]:
    """``provider:name`` as (provider, name); a name without a provider is its own."""
    provider, sep, name = model.partition(":")
    return (provider, name) if sep else ("", model)


class TaskTracing:
    """A tracer provider that gives each task's root span ids derived from the task id."""

    def __init__(self, processors: Sequence[SpanProcessor], resource: Resource | None = None) -> None:
        self.provider = TracerProvider(resource=resource or Resource.create(), id_generator=_TaskIds())
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(TRACER_NAME)

    @classmethod
    def from_environment(cls, service_name: str, environ: Mapping[str, str]) -> TaskTracing:
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        exporters = _exporters(environ)
        return cls([BatchSpanProcessor(exporter) for exporter in exporters], resource)

    def shutdown(self) -> None:
        self.provider.shutdown()

    def submission(self, agent: str, queue: str) -> Submission:
        """Starts timing a submit; :meth:`Submission.end` makes the root span once the task (and its id) exists."""
        return Submission(self, agent, queue, trace.get_current_span().get_span_context())

    def retried(self, task_id: UUID, agent: str) -> None:
        """A manual retry: a short span under the task's root."""
        span = self.tracer.start_span(
            f"retry {agent}",
            context=task_context(task_id),
            kind=SpanKind.PRODUCER,
            attributes={"opscore.task.id": str(task_id), "gen_ai.agent.name": agent},
        )
        span.end()

    def run(self, task_id: UUID, attempt: int, agent: str, queue: str) -> RunTrace:
        span = self.tracer.start_span(
            f"invoke_agent {agent}",
            context=task_context(task_id),
            kind=SpanKind.CONSUMER,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "opscore.task.id": str(task_id),
                "opscore.task.attempt": attempt,
                "messaging.system": QUEUE_SYSTEM,
                "messaging.destination.name": queue,
                "messaging.operation.type": "process",
            },
        )
        return RunTrace(self.tracer, span)


class Submission:
    def __init__(self, tracing: TaskTracing, agent: str, queue: str, caller: SpanContext) -> None:
        self._tracing = tracing
        self._agent = agent
        self._queue = queue
        self._caller = caller
        self._started = time.time_ns()

    def end(self, task_id: UUID) -> None:
        # The caller's own trace (an instrumented HTTP server, a client's traceparent) is linked, not
        # joined: the task's trace must be the one its id names.
        links = [Link(self._caller)] if self._caller.is_valid else []
        token = _FORCED_IDS.set(trace_ids(task_id))
        try:
            span = self._tracing.tracer.start_span(
                f"submit {self._agent}",
                context=Context(),
                kind=SpanKind.PRODUCER,
                start_time=self._started,
                links=links,
                attributes={
                    "opscore.task.id": str(task_id),
                    "gen_ai.agent.name": self._agent,
                    "messaging.system": QUEUE_SYSTEM,
                    "messaging.destination.name": self._queue,
                    "messaging.operation.type": "send",
                },
            )
        finally:
            _FORCED_IDS.reset(token)
        span.end()


class RunTrace:
    """One attempt's span and its children, fed the run's events in order."""

    def __init__(self, tracer: trace.Tracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span
        self._context = trace.set_span_in_context(span)
        self._model: Span | None = None
        # When the step's tools started: the last event before their results (the last policy decision).
        self._tools_started = 0

    def model_request(self, when: datetime, step: int, model: str) -> None:
        provider, name = split_model(model)
        self._model = self._tracer.start_span(
            f"chat {name}",
            context=self._context,
            kind=SpanKind.CLIENT,
            start_time=_ns(when),
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": provider,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": name,
                "opscore.step": step,
            },
        )

    def model_response(
        self, when: datetime, model: str, finish_reason: str | None, input_tokens: int, output_tokens: int
    ) -> None:
        span, self._model = self._model, None
        if span is None:
            return
        attributes: dict[str, Any] = {
            "gen_ai.response.model": split_model(model)[1],
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
        }
        if finish_reason:
            attributes["gen_ai.response.finish_reasons"] = (finish_reason,)
        span.set_attributes(attributes)
        span.end(end_time=_ns(when))

    def model_failed(self, when: datetime | None, kind: str) -> None:
        span, self._model = self._model, None
        if span is not None:
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, kind))
            span.end(end_time=_ns(when) if when is not None else None)

    def mark(self, when: datetime) -> None:
        """An event other than a tool result: the step's tools, if any, start after it."""
        self._tools_started = _ns(when)

    def tool_result(
        self, when: datetime, name: str, call_id: str, error_kind: str | None, duration_seconds: float | None
    ) -> None:
        # Tools of a step run together, after the step's last decision; one that did not run has no duration.
        if duration_seconds is None or not self._tools_started:
            start = end = _ns(when)
        else:
            start = self._tools_started
            end = start + int(duration_seconds * 1_000_000_000)
        span = self._tracer.start_span(
            f"execute_tool {name}",
            context=self._context,
            kind=SpanKind.INTERNAL,
            start_time=start,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
            },
        )
        if error_kind:
            span.set_attribute("error.type", error_kind)
            span.set_status(Status(StatusCode.ERROR, error_kind))
        span.end(end_time=end)

    def end(self, status: str, error_type: str | None) -> None:
        self.model_failed(None, "interrupted")
        self.span.set_attribute("opscore.task.status", status)
        if error_type:
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(Status(StatusCode.ERROR, error_type))
        self.span.end()


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in exporter_names(environ):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        else:
            exporters.append(ConsoleSpanExporter())
    return exporters
