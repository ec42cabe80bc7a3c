"""A task's trace, across the broker: submitted, failed once, retried and completed, in one span tree.

The whole path of ``opscore dev``: the task service publishes a real Dramatiq
message on the in-process broker, a worker process (its Dramatiq worker,
middleware and runner, in this process) claims and runs it against a local
OpenAI-compatible fake, and the SDK's in-memory exporter collects the spans.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from uuid import UUID

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ops_core import tracing
from ops_core.config import Settings
from ops_core.lifecycle import TaskStatus
from ops_core.queue.broker import setup_broker
from ops_core.runtime import Runtime
from ops_core.task_traces import TaskTracing
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT
from ops_core.worker.process import WorkerProcess
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import free_port
from tests.support.waiting import wait_for_sync

MODEL = "openai:gpt-4o-mini"
# Four 500s spend agentkit's own retries of the first attempt; the second attempt calls the calculator.
GOAL = "[[fail_first=4]] [[tool_stall=0]] What is 6 * 7?"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start(free_port())
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-for-the-local-fake")
    yield server
    server.stop()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    traced = TaskTracing([SimpleSpanProcessor(exporter)])
    previous = tracing.install(traced)
    yield exporter
    tracing.install(previous)
    traced.shutdown()


def _run_task(settings: Settings) -> UUID:
    broker = setup_broker(settings)
    worker = WorkerProcess(settings, threads=2, concurrency=2, broker=broker, supervised=False)
    worker.start()
    try:

        async def submit() -> UUID:
            runtime = Runtime.open(settings, broker=broker)
            try:
                task, _ = await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal=GOAL, model=MODEL)
                return task.id
            finally:
                await runtime.close()

        task_id = asyncio.run(submit())

        async def status() -> TaskStatus:
            runtime = Runtime.open(settings)
            try:
                return (await runtime.store.get(task_id, tenant=EVERY_TENANT)).status
            finally:
                await runtime.close()

        wait_for_sync(lambda: asyncio.run(status()), lambda s: s is TaskStatus.COMPLETED, timeout=30, what="completed")
    finally:
        worker.stop()
    return task_id


def test_one_trace_per_task_from_submission_through_every_attempt_to_each_model_and_tool_call(
    sqlite_url: str, fake: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    settings = Settings(
        database_url=sqlite_url,
        broker_url="memory://",
        default_model=MODEL,
        retry_backoff_seconds=0.1,
        relay_interval_seconds=0.2,
        shutdown_grace_seconds=0.5,
    )
    task_id = _run_task(settings)
    finished = spans.get_finished_spans()
    assert {s.context.trace_id for s in finished} == {task_id.int}, "every span is in the task's trace"

    (root,) = [s for s in finished if s.parent is None]
    assert (root.name, root.kind) == ("submit default", SpanKind.PRODUCER)
    assert root.context.span_id == tracing.trace_ids(task_id)[1]
    assert root.attributes is not None and root.attributes["opscore.task.id"] == str(task_id)

    runs = sorted(_children(finished, root), key=lambda s: _attr(s, "opscore.task.attempt"))
    assert [(s.name, s.kind, _attr(s, "opscore.task.attempt")) for s in runs] == [
        ("invoke_agent default", SpanKind.CONSUMER, 1),
        ("invoke_agent default", SpanKind.CONSUMER, 2),
    ]
    first, second = runs
    assert (_attr(first, "opscore.task.status"), _attr(first, "error.type")) == ("retrying", "model_error")
    assert first.status.status_code is StatusCode.ERROR
    assert _attr(second, "opscore.task.status") == "completed"
    assert second.status.status_code is StatusCode.UNSET

    (failed_call,) = _children(finished, first)
    assert (failed_call.name, _attr(failed_call, "error.type")) == ("chat gpt-4o-mini", "server")
    assert failed_call.status.status_code is StatusCode.ERROR

    steps = sorted(_children(finished, second), key=lambda s: s.start_time or 0)
    assert [s.name for s in steps] == ["chat gpt-4o-mini", "execute_tool calculator", "chat gpt-4o-mini"]
    ask, tool, answer = steps
    for call, reason in ((ask, "tool_calls"), (answer, "stop")):
        assert call.kind is SpanKind.CLIENT
        assert dict(call.attributes or {}) | {"opscore.step": 0} == {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.response.finish_reasons": (reason,),
            "opscore.step": 0,
        }
    assert (_attr(tool, "gen_ai.operation.name"), _attr(tool, "gen_ai.tool.name")) == ("execute_tool", "calculator")
    assert tool.status.status_code is StatusCode.UNSET
    # In order and inside their run: the tool ran after the call that asked for it and before the answer.
    assert _ends(ask) <= _starts(tool) <= _ends(tool) <= _starts(answer)
    assert _starts(second) <= _starts(ask) and _ends(answer) <= _ends(second)


def _children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _attr(span: ReadableSpan, name: str) -> object:
    return (span.attributes or {}).get(name)


def _starts(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return span.start_time


def _ends(span: ReadableSpan) -> int:
    assert span.end_time is not None
    return span.end_time
