"""Request-scoped access to what the lifespan built, as ``Annotated`` dependency aliases.

Routes never reach for globals: everything hangs off ``app.state``, so two
apps in one process (tests, dev mode) stay independent, and tests can swap
any piece with ``app.dependency_overrides``.

Every dependency is ``async def`` although none awaits: FastAPI runs a plain
``def`` dependency in the threadpool, a thread hop per dependency per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request

from ops_core.api.metrics import ApiMetrics
from ops_core.config import Settings
from ops_core.db.access import AccessStore
from ops_core.db.approvals import ApprovalStore
from ops_core.db.store import TaskStore
from ops_core.errors import DatabaseUnavailable, Unavailable
from ops_core.queue.publisher import Publisher
from ops_core.runtime import Runtime
from ops_core.services.approvals import ApprovalService
from ops_core.services.tasks import TaskService
from ops_core.services.workflows import WorkflowService
from ops_core.streams import StreamHub


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        # Only reachable if requests arrive outside the lifespan (starting up, or shut down).
        raise Unavailable("the API is not ready to serve requests")
    return runtime


async def get_store(runtime: Annotated[Runtime, Depends(get_runtime)]) -> TaskStore:
    return runtime.store


async def get_access(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AccessStore:
    return runtime.access


async def get_publisher(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Publisher:
    return runtime.publisher


async def get_task_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> TaskService:
    return runtime.tasks


async def get_approvals(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ApprovalStore:
    return runtime.approvals


async def get_approval_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ApprovalService:
    return runtime.approval_service


async def get_workflow_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> WorkflowService:
    return runtime.workflows


async def get_streams(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> StreamHub:
    streams: StreamHub = request.app.state.streams
    return streams


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[TaskStore, Depends(get_store)]
AccessDep = Annotated[AccessStore, Depends(get_access)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
StreamsDep = Annotated[StreamHub, Depends(get_streams)]
ApprovalStoreDep = Annotated[ApprovalStore, Depends(get_approvals)]
ApprovalServiceDep = Annotated[ApprovalService, Depends(get_approval_service)]
WorkflowServiceDep = Annotated[WorkflowService, Depends(get_workflow_service)]


def request_deadline(settings: Settings) -> float:
    return settings.request_deadline_seconds


@asynccontextmanager
async def bounded(settings: Settings) -> AsyncIterator[None]:
    """Turn a request that outlives :func:`request_deadline` into a 503, never a hang."""
    seconds = request_deadline(settings)
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise DatabaseUnavailable(f"the database did not answer within {seconds:g}s") from None
