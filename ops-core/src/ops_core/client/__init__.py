"""The Python SDK: ops-core's REST API as typed calls, the supported way to use ops-core from Python.

::

    from ops_core.client import Client

    with Client() as api:  # OPSCORE_API_URL, OPSCORE_API_KEY
        task = api.submit("What is 6 * 7?", idempotency_key="q-42")
        for event in api.stream(task.id):
            print(event.seq, event.type)
        print(api.wait(task.id, timeout=60).result)

:class:`AsyncClient` has the same operations for asyncio. Errors are the
classes of :mod:`ops_core.client.errors`, one per error code of the API. The
SDK needs httpx and pydantic only: it imports nothing of the server.
"""

from __future__ import annotations

from ops_core.client.aio import AsyncClient
from ops_core.client.errors import ApiError
from ops_core.client.models import (
    BatchItem,
    BatchResult,
    LiveEvent,
    StreamEvent,
    Task,
    TaskEvent,
    TaskPage,
    TaskRequest,
    TaskSummary,
    Worker,
)
from ops_core.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "BatchItem",
    "BatchResult",
    "Client",
    "LiveEvent",
    "StreamEvent",
    "Task",
    "TaskEvent",
    "TaskPage",
    "TaskRequest",
    "TaskSummary",
    "Worker",
]
