"""``/v1/workflows``: submit a DAG of steps, read it, list, cancel."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from ops_core.api.auth import Reader, Writer
from ops_core.api.deps import MetricsDep, SettingsDep, WorkflowServiceDep, bounded
from ops_core.api.errors import AUTH, INVALID, NOT_FOUND, THROTTLED, TOO_LARGE, UNAVAILABLE, error_doc
from ops_core.api.schemas import to_json
from ops_core.api.storable import StorableText
from ops_core.api.workflow_schemas import WorkflowCreate, WorkflowPublic, WorkflowsPublic
from ops_core.db.workflows import WorkflowView
from ops_core.workflow_lifecycle import WorkflowStatus

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], responses=AUTH)

MAX_PAGE = 500


def _workflow_response(view: WorkflowView, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(
        content=to_json(WorkflowPublic.from_view(view)), status_code=status_code, media_type="application/json"
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WorkflowPublic,
    responses={
        200: {"model": WorkflowPublic, "description": "The workflow submitted earlier with this idempotency_key"},
        409: error_doc("The idempotency_key was used before with a different request"),
        **TOO_LARGE,
        **INVALID,
        **THROTTLED,
        **UNAVAILABLE,
    },
)
async def submit_workflow(
    body: WorkflowCreate, caller: Writer, workflows: WorkflowServiceDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    """Start a workflow in the caller's tenant: its steps without depends_on start at once, each other
    step when its parents are done. 202 when created, 200 with the existing one on a repeated idempotency_key."""
    async with bounded(settings):
        view, created = await workflows.submit(body, tenant=caller.tenant)
    if created:
        for step in view.steps:
            if step.task_id is not None:
                metrics.task_submitted(step.agent)
    return _workflow_response(view, status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


@router.get("", response_model=WorkflowsPublic, responses={**INVALID, **UNAVAILABLE})
async def list_workflows(
    caller: Reader,
    workflows: WorkflowServiceDep,
    settings: SettingsDep,
    status: WorkflowStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[StorableText | None, Query(min_length=1, max_length=500)] = None,
) -> Response:
    """The tenant's workflows (an admin's: every tenant's), newest first; follow ``next_cursor`` for older pages."""
    async with bounded(settings):
        page = await workflows.list(tenant=caller.scope, status=status, limit=limit, cursor=cursor)
    return Response(content=to_json(WorkflowsPublic.from_page(page)), media_type="application/json")


@router.get("/{workflow_id}", response_model=WorkflowPublic, responses={**NOT_FOUND, **INVALID, **UNAVAILABLE})
async def get_workflow(
    workflow_id: UUID, caller: Reader, workflows: WorkflowServiceDep, settings: SettingsDep
) -> Response:
    """The workflow's status and every step's status and task."""
    async with bounded(settings):
        view = await workflows.get(workflow_id, tenant=caller.scope)
    return _workflow_response(view)


@router.post(
    "/{workflow_id}/cancel",
    response_model=WorkflowPublic,
    responses={**NOT_FOUND, 409: error_doc("The workflow already ended"), **INVALID, **UNAVAILABLE},
)
async def cancel_workflow(
    workflow_id: UUID, caller: Writer, workflows: WorkflowServiceDep, settings: SettingsDep
) -> Response:
    """Cancel the workflow and every step: steps not started are skipped, pending ones cancelled at once,
    running ones flagged (their workers stop them)."""
    async with bounded(settings):
        view = await workflows.cancel(workflow_id, tenant=caller.scope)
    return _workflow_response(view)
