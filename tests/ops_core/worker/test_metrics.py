"""Worker metrics: what one attempt counts, from its start to its end, and how the pool adds processes up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentkit import RunEvent, RunEventType
from agentkit.errors import ModelServerError
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.registry import default_registry
from agentkit.testing import FunctionModel
from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import Claim, Task
from ops_core.db.store import TaskStore
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.execute import Execution, ExecutionContext
from ops_core.worker.metrics import MULTIPROC_DIR, UNKNOWN_TOOL, WorkerMetrics
from ops_core.worker.models import ModelCache
from ops_core.worker.pool import _Slot, _supervise
from ops_core.worker.pool_metrics import PoolMetrics, lost_reason
from ops_core.worker.telemetry import RunTelemetry, error_kind
from ops_core.worker.watchdog import EXIT_LOOP_STALLED
from tests.ops_core.db.helpers import make_task
from tests.support.processes import free_port


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TaskStore]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url))
    try:
        yield open_store(engine)
    finally:
        await engine.dispose()


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def _execute(store: TaskStore, metrics: WorkerMetrics, models: ModelCache, **task: object) -> Task:
    async def republish(task: Task, delay: float) -> None:
        return None

    made = await make_task(store, agent="default", model="offline:default", **task)
    claim = await store.claim(made.id, "w1")
    assert claim is not None
    ctx = ExecutionContext(store, default_registry(), models, Settings(), republish, metrics=metrics)
    await Execution(ctx, claim, cancelled=asyncio.Event()).run()
    return await store.get(made.id, tenant=EVERY_TENANT)


async def test_a_run_counts_its_start_end_queue_lag_model_calls_tokens_and_tool_call(store: TaskStore) -> None:
    metrics = WorkerMetrics()
    # The offline model calls the calculator (step 1), then answers (step 2).
    done = await _execute(store, metrics, ModelCache(), goal="What is 6 * 7?")
    assert done.status is TaskStatus.COMPLETED

    assert value(metrics, "opscore_runs_started_total", agent="default") == 1
    assert value(metrics, "opscore_runs_finished_total", agent="default", status="completed") == 1
    assert value(metrics, "opscore_run_duration_seconds_count", agent="default", status="completed") == 1
    assert value(metrics, "opscore_runs_in_flight") == 0
    assert value(metrics, "opscore_queue_lag_seconds_count", agent="default") == 1
    model = {"provider": "offline", "model": "default"}
    assert value(metrics, "opscore_model_calls_total", **model) == 2
    assert value(metrics, "opscore_model_call_duration_seconds_count", **model) == 2
    # The same tokens the task row holds.
    assert value(metrics, "opscore_model_input_tokens_total", **model) == done.input_tokens > 0
    assert value(metrics, "opscore_model_output_tokens_total", **model) == done.output_tokens > 0
    assert value(metrics, "opscore_tool_calls_total", tool="calculator") == 1
    assert value(metrics, "opscore_tool_call_duration_seconds_count", tool="calculator") == 1
    assert (
        metrics.registry.get_sample_value("opscore_tool_call_errors_total", {"tool": "calculator", "kind": "exception"})
        is None
    )
    assert value(metrics, "opscore_run_retries_total", agent="default", error_type="model_error") == 0


async def test_a_failed_model_call_and_the_retry_it_causes_are_counted(store: TaskStore) -> None:
    def failing(request: ModelRequest) -> ModelResponse:
        raise ModelServerError("injected 503")

    metrics = WorkerMetrics()
    models = ModelCache()
    models._models["offline:default"] = FunctionModel(failing, name="offline:default")
    retried = await _execute(store, metrics, models, goal="say hello", max_retries=2)
    assert retried.status is TaskStatus.PENDING

    assert value(metrics, "opscore_runs_finished_total", agent="default", status="retrying") == 1
    assert value(metrics, "opscore_run_retries_total", agent="default", error_type="model_error") == 1
    model = {"provider": "offline", "model": "default"}
    assert value(metrics, "opscore_model_calls_total", **model) == 1
    assert value(metrics, "opscore_model_call_errors_total", kind="server", **model) == 1
    assert value(metrics, "opscore_model_input_tokens_total", **model) == 0
    assert value(metrics, "opscore_runs_in_flight") == 0


def _claim(attempt: int = 1, lag: float = 2.5) -> Claim:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    task = Task(
        id=uuid4(),
        tenant="t",
        agent="a",
        goal="g",
        model="openai:gpt-4o-mini",
        status=TaskStatus.RUNNING,
        max_retries=3,
        timeout_seconds=60,
        created_at=created,
        updated_at=created,
        claimed_at=created + timedelta(seconds=lag),
        attempts=attempt,
    )
    return Claim(task=task, attempt=attempt)


def _event(type_: RunEventType, **payload: object) -> RunEvent:
    return RunEvent.build(type_, "run", 1, **payload)


def test_tool_errors_by_kind_and_a_made_up_tool_is_one_bounded_label() -> None:
    metrics = WorkerMetrics()
    run = RunTelemetry(_claim(), "q", metrics, None)
    run.started()
    for name, kind, seconds in (("search", "timeout", 5.0), ("search", None, 0.2), ("made-up-1", "unknown_tool", None)):
        run.on_event(_event(RunEventType.TOOL_CALL, id="c", name=name, arguments={}))
        run.on_event(
            _event(
                RunEventType.TOOL_RESULT,
                id="c",
                name=name,
                is_error=kind is not None,
                error_kind=kind,
                duration_seconds=seconds,
            )
        )
    assert value(metrics, "opscore_tool_calls_total", tool="search") == 2
    assert value(metrics, "opscore_tool_call_errors_total", tool="search", kind="timeout") == 1
    assert value(metrics, "opscore_tool_call_duration_seconds_count", tool="search") == 2
    assert value(metrics, "opscore_tool_call_duration_seconds_sum", tool="search") == pytest.approx(5.2)
    assert value(metrics, "opscore_tool_calls_total", tool=UNKNOWN_TOOL) == 1
    assert value(metrics, "opscore_tool_call_errors_total", tool=UNKNOWN_TOOL, kind="unknown_tool") == 1
    assert value(metrics, "opscore_tool_call_duration_seconds_count", tool=UNKNOWN_TOOL) == 0
    assert value(metrics, "opscore_queue_lag_seconds_sum", agent="a") == 2.5


def test_a_run_stopped_by_shutdown_mid_call_is_handed_back_and_its_call_interrupted() -> None:
    metrics = WorkerMetrics()
    run = RunTelemetry(_claim(attempt=2), "q", metrics, None)
    run.started()
    assert value(metrics, "opscore_runs_in_flight") == 1
    run.on_event(_event(RunEventType.MODEL_REQUEST, model="openai:gpt-4o-mini"))
    run.closed(interrupted=True)
    assert value(metrics, "opscore_runs_in_flight") == 0
    assert value(metrics, "opscore_runs_finished_total", agent="a", status="handed_back") == 1
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(metrics, "opscore_model_call_errors_total", kind="interrupted", **labels) == 1
    assert value(metrics, "opscore_queue_lag_seconds_count", agent="a") == 0, "only a first attempt's wait is lag"
    lost = RunTelemetry(_claim(), "q", metrics, None)
    lost.started()
    lost.closed()
    assert value(metrics, "opscore_runs_finished_total", agent="a", status="lost") == 1


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"kind": "model_error", "cause": "ModelRateLimitError"}, "rate_limit"),
        ({"kind": "model_error", "cause": "ModelServerError"}, "server"),
        ({"kind": "usage_limit"}, "usage_limit"),
    ],
)
def test_a_model_failure_is_named_by_its_cause(payload: dict[str, object], kind: str) -> None:
    assert error_kind(payload) == kind


def test_the_supervisor_reports_each_dead_process_with_a_bounded_reason() -> None:
    class Dead:
        pid, exitcode = 4242, -9

        def is_alive(self) -> bool:
            return False

        def close(self) -> None:
            pass

    heard: list[tuple[int | None, int | None]] = []
    slot = _Slot(Dead(), started=0.0)  # type: ignore[arg-type]
    _supervise(slot, 1.0, lambda: Dead(), lambda pid, code: heard.append((pid, code)))  # type: ignore[arg-type,return-value]
    assert heard == [(4242, -9)]
    assert [lost_reason(code) for code in (-9, EXIT_LOOP_STALLED, 1, None)] == ["signal", "stalled", "exited", "exited"]


# What a worker process does with its metrics, in a child of its own: its values go to the pool's directory.
CHILD = """
from ops_core.worker.metrics import WorkerMetrics
metrics = WorkerMetrics.from_environment()
assert metrics is not None
for _ in range({runs}):
    metrics.run_started("default", 0.01)
    metrics.run_finished("default", "completed", 0.5, None)
metrics.model_call("openai", "gpt-4o-mini", 0.2, 10, 5)
metrics.run_started("default", None)  # still in flight when the child exits
print("ok", flush=True)
"""


def test_the_pool_endpoint_adds_up_its_processes_and_drops_a_dead_ones_gauge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    pool = PoolMetrics.start(Settings(worker_metrics_port=free_port()))
    try:
        assert os.environ[MULTIPROC_DIR] == pool.directory
        children = [
            subprocess.run([sys.executable, "-c", CHILD.format(runs=runs)], capture_output=True, text=True, timeout=60)
            for runs in (3, 4)
        ]
        assert [c.stdout.strip() for c in children] == ["ok", "ok"], [c.stderr for c in children]
        # No pid of a child is known here: the children are gone, but their files stay until marked.
        samples = _scrape(pool.port)
        assert samples[("opscore_runs_started_total", (("agent", "default"),))] == 3 + 4 + 2
        assert samples[("opscore_runs_finished_total", (("agent", "default"), ("status", "completed")))] == 7
        assert samples[("opscore_model_input_tokens_total", (("model", "gpt-4o-mini"), ("provider", "openai")))] == 20
        in_flight = {k: v for k, v in samples.items() if k[0] == "opscore_runs_in_flight"}
        assert sorted(in_flight.values()) == [1.0, 1.0] and len({dict(k[1])["pid"] for k in in_flight}) == 2
        for key in in_flight:
            pool.process_died(int(dict(key[1])["pid"]), -9)
        after = _scrape(pool.port)
        assert not any(k[0] == "opscore_runs_in_flight" for k in after), "a dead process's gauge is dropped"
        assert after[("opscore_runs_started_total", (("agent", "default"),))] == 9, "its counters are kept"
        assert after[("opscore_worker_processes_lost_total", (("reason", "signal"),))] == 2
    finally:
        pool.close()
    assert MULTIPROC_DIR not in os.environ and not os.path.exists(pool.directory)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
