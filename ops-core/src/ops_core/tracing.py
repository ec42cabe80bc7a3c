"""Whether this process traces tasks (OpenTelemetry), and where each task's trace is.

Tracing is off unless the standard ``OTEL_*`` variables ask for it:
``OTEL_TRACES_EXPORTER`` set to anything but ``none``, or an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
and ``OTEL_SDK_DISABLED`` not ``true``. Off, nothing of OpenTelemetry is
imported and every hook is one ``is None`` test.

**How a task's trace context travels.** The message carries only the task
id (see :mod:`ops_core.queue.actors`), and the trace context is a function of
it: the trace id is the task id's 128 bits, and the id of the trace's root
span (the submission) is its low 64 bits. So every message that can start an
attempt carries it, with no column and no header: the submit's, a retry's
delayed message, the relay's republish, the reaper's requeue of a dead
worker's run, a manual retry. A redelivered message or a retried attempt
joins the same trace, and anyone holding a task id can find its trace.

The spans themselves are built in :mod:`ops_core.task_traces`; this module is
what the hot paths import, and it stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from uuid import UUID

from ops_core.errors import ConfigError

if TYPE_CHECKING:
    from ops_core.task_traces import TaskTracing

_SPAN_ID_MASK = (1 << 64) - 1

_active: TaskTracing | None = None


def active() -> TaskTracing | None:
    """This process's task tracing, or None when tracing is off."""
    return _active


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return any(name.strip().lower() not in ("", "none") for name in exporters.split(","))
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters the ``OTEL_*`` variables name (``otlp``, ``console``); raises ConfigError naming a bad one."""
    if not wanted(environ):
        return []
    names = [name.strip().lower() for name in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")]
    names = [name for name in names if name not in ("", "none")]
    for name in names:
        if name not in ("otlp", "console"):
            raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; use otlp, console or none")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if "otlp" in names and protocol.strip() != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: ops-core exports OTLP over"
            " http/protobuf (port 4318)"
        )
    return names


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> TaskTracing | None:
    """Start tracing as the ``OTEL_*`` variables say, once per process; ``service_name`` unless OTEL_SERVICE_NAME.

    A bad value (an unknown exporter, an unsupported protocol) raises
    :class:`~ops_core.errors.ConfigError` naming the variable.
    """
    global _active
    if _active is None and wanted(environ):
        from ops_core.task_traces import TaskTracing

        _active = TaskTracing.from_environment(service_name, environ)
    return _active


def install(tracing: TaskTracing | None) -> TaskTracing | None:
    """Use ``tracing`` from now on (None: off); returns what was active. For tests and embedders."""
    global _active
    previous, _active = _active, tracing
    return previous


def trace_ids(task_id: UUID) -> tuple[int, int]:
    """The task's trace id and the id of its root (submission) span."""
    # A uuid4's low 64 bits are random, never all zero in practice; a zero span id would be invalid.
    return task_id.int, (task_id.int & _SPAN_ID_MASK) or 1
