"""``/v1/approvals`` and ``/v1/tasks/{id}/approvals/{call_id}``: the calls that wait for a person, and deciding them."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query

from ops_core.api.approval_schemas import ApprovalDecided, ApprovalDecisionBody, ApprovalPublic, ApprovalsPublic
from ops_core.api.auth import Reader, Writer
from ops_core.api.deps import ApprovalServiceDep, ApprovalStoreDep, SettingsDep, bounded
from ops_core.api.errors import AUTH, INVALID, NOT_FOUND, TOO_LARGE, UNAVAILABLE, error_doc
from ops_core.api.storable import StorableText
from ops_core.domain import ApprovalStatus

router = APIRouter(tags=["approvals"], responses=AUTH)

MAX_PAGE = 500


@router.get("/v1/approvals", response_model=ApprovalsPublic, responses={**INVALID, **UNAVAILABLE})
async def list_approvals(
    caller: Reader,
    approvals: ApprovalStoreDep,
    settings: SettingsDep,
    status: ApprovalStatus | None = None,
    task_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ApprovalsPublic:
    """The tenant's tool calls asked of a person, oldest first; ``status=pending`` for those still to decide."""
    async with bounded(settings):
        items = await approvals.list(tenant=caller.scope, status=status, task_id=task_id, limit=limit)
    return ApprovalsPublic(items=[ApprovalPublic.model_validate(a) for a in items])


@router.post(
    "/v1/tasks/{task_id}/approvals/{call_id}",
    response_model=ApprovalDecided,
    responses={
        **NOT_FOUND,
        409: error_doc("The task is not waiting, or the call was already decided"),
        **TOO_LARGE,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def decide_approval(
    task_id: UUID,
    call_id: Annotated[StorableText, Path(min_length=1, max_length=200)],
    body: ApprovalDecisionBody,
    caller: Writer,
    service: ApprovalServiceDep,
    settings: SettingsDep,
) -> ApprovalDecided:
    """Approve (optionally with edited arguments) or deny one waiting call. Once every call the task
    waits on is decided, it goes back to pending and resumes from its checkpoint on any worker."""
    async with bounded(settings):
        decided = await service.decide(
            task_id,
            call_id,
            tenant=caller.scope,
            approve=body.decision == "approve",
            decided_by=caller.key_id,
            reason=body.reason,
            arguments=body.arguments,
        )
    return ApprovalDecided(approval=ApprovalPublic.model_validate(decided.approval), task_status=decided.task.status)
