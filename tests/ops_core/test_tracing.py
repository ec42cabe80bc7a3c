"""Tracing is off unless OTEL_* asks for it, refuses what it cannot do by name, and a task's ids are its own."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from ops_core import tracing
from ops_core.errors import ConfigError


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    previous = tracing.install(None)
    yield
    current = tracing.install(previous)
    if current is not None and current is not previous:
        current.shutdown()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console, none"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_wanted_only_when_the_standard_variables_ask(environ: dict[str, str], expected: bool) -> None:
    assert tracing.wanted(environ) is expected


def test_unset_variables_configure_nothing_and_import_no_opentelemetry() -> None:
    # A fresh interpreter: this one imported OpenTelemetry for other tests.
    code = (
        "import sys, os\n"
        "from ops_core import tracing\n"
        "import ops_core.services.tasks, ops_core.worker.execute\n"
        "assert tracing.configure('x', environ={}) is None and tracing.active() is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_configure_builds_one_tracing_per_process_with_the_service_name() -> None:
    environ = {"OTEL_TRACES_EXPORTER": "console"}
    made = tracing.configure("opscore-worker", environ)
    assert made is not None and tracing.active() is made
    assert tracing.configure("opscore-api", environ) is made, "the first configuration stays"
    assert made.provider.resource.attributes["service.name"] == "opscore-worker"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_setting_it_cannot_honour_fails_at_start_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        tracing.configure("opscore-api", environ)
    assert tracing.active() is None


def test_a_tasks_trace_ids_come_from_its_id() -> None:
    task_id = uuid.UUID("0123456789abcdeffedcba9876543210")
    assert tracing.trace_ids(task_id) == (task_id.int, 0xFEDCBA9876543210)
    assert tracing.trace_ids(uuid.UUID(int=1 << 64))[1] == 1, "a zero span id is invalid"
