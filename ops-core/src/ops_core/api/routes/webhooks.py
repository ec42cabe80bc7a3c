"""``/v1/webhooks``: the tenant's signing secret and the deliveries of completion webhooks (tasks' and workflows').

The secret signs every webhook of its tenant, so reading or rotating it needs
the ``webhooks`` scope (or ``admin``, which may name any tenant with ``?tenant=``).
Deliveries and their attempts are task data: any key that reads the tenant's
tasks reads them.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from ops_core.api.access_schemas import Tenant
from ops_core.api.auth import Reader, WebhookAdmin
from ops_core.api.deps import SettingsDep, StoreDep, WorkflowServiceDep, bounded, get_runtime
from ops_core.api.errors import AUTH, INVALID, NOT_FOUND, UNAVAILABLE
from ops_core.api.webhook_schemas import WebhookDeliveriesPublic, WebhookDeliveryPublic, WebhookSecretPublic
from ops_core.db.webhooks import TASK_SUBJECT, WORKFLOW_SUBJECT, WebhookStatus, WebhookStore
from ops_core.errors import Forbidden, InvalidRequest
from ops_core.keys import Caller, Scope
from ops_core.runtime import Runtime

router = APIRouter(tags=["webhooks"], responses={**AUTH, **INVALID, **UNAVAILABLE})

MAX_PAGE = 500


async def get_webhooks(runtime: Annotated[Runtime, Depends(get_runtime)]) -> WebhookStore:
    return runtime.webhooks


WebhooksDep = Annotated[WebhookStore, Depends(get_webhooks)]


def _tenant_of(caller: Caller, tenant: str | None) -> str:
    if tenant is None or tenant == caller.tenant:
        return caller.tenant
    if Scope.ADMIN not in caller.scopes:
        raise Forbidden("only an admin key may name another tenant")
    return tenant


@router.get("/v1/webhooks/secret")
async def get_secret(
    caller: WebhookAdmin,
    webhooks: WebhooksDep,
    settings: SettingsDep,
    tenant: Annotated[Tenant | None, Query(description="Admin only: another tenant's secret.")] = None,
) -> WebhookSecretPublic:
    """The tenant's webhook signing secret (made on first use): verify deliveries with it."""
    async with bounded(settings):
        return WebhookSecretPublic.from_secret(await webhooks.secret(_tenant_of(caller, tenant)))


@router.post("/v1/webhooks/secret")
async def rotate_secret(
    caller: WebhookAdmin,
    webhooks: WebhooksDep,
    settings: SettingsDep,
    tenant: Annotated[Tenant | None, Query(description="Admin only: another tenant's secret.")] = None,
) -> WebhookSecretPublic:
    """Rotate the secret: deliveries are signed with the new one, and with the old one too for 24 hours."""
    async with bounded(settings):
        return WebhookSecretPublic.from_secret(await webhooks.rotate(_tenant_of(caller, tenant)))


@router.get("/v1/webhooks/deliveries")
async def list_deliveries(
    caller: Reader,
    webhooks: WebhooksDep,
    settings: SettingsDep,
    task_id: UUID | None = None,
    workflow_id: UUID | None = None,
    status: WebhookStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> WebhookDeliveriesPublic:
    """The tenant's deliveries (an admin's: every tenant's), newest first, each with its attempts;
    ``task_id`` or ``workflow_id`` keeps one subject's."""
    if task_id is not None and workflow_id is not None:
        raise InvalidRequest("give task_id or workflow_id, not both")
    subject_type, subject_id = None, None
    if task_id is not None:
        subject_type, subject_id = TASK_SUBJECT, str(task_id)
    elif workflow_id is not None:
        subject_type, subject_id = WORKFLOW_SUBJECT, str(workflow_id)
    async with bounded(settings):
        found = await webhooks.deliveries(
            tenant=caller.scope, subject_type=subject_type, subject_id=subject_id, status=status, limit=limit
        )
    return WebhookDeliveriesPublic(items=[WebhookDeliveryPublic.from_delivery(d) for d in found])


@router.get("/v1/tasks/{task_id}/webhooks", responses=NOT_FOUND)
async def task_deliveries(
    task_id: UUID, caller: Reader, store: StoreDep, webhooks: WebhooksDep, settings: SettingsDep
) -> WebhookDeliveriesPublic:
    """The task's webhook deliveries (one per time it ended), newest first, each with every attempt."""
    async with bounded(settings):
        await store.get(task_id, tenant=caller.scope)  # 404 for an unknown task or another tenant's
        found = await webhooks.deliveries(tenant=caller.scope, subject_type=TASK_SUBJECT, subject_id=str(task_id))
    return WebhookDeliveriesPublic(items=[WebhookDeliveryPublic.from_delivery(d) for d in found])


@router.get("/v1/workflows/{workflow_id}/webhooks", responses=NOT_FOUND)
async def workflow_deliveries(
    workflow_id: UUID, caller: Reader, workflows: WorkflowServiceDep, webhooks: WebhooksDep, settings: SettingsDep
) -> WebhookDeliveriesPublic:
    """The workflow's webhook delivery (one, once it ended and its steps settled), with every attempt."""
    async with bounded(settings):
        await workflows.get(workflow_id, tenant=caller.scope)  # 404 for an unknown workflow or another tenant's
        found = await webhooks.deliveries(
            tenant=caller.scope, subject_type=WORKFLOW_SUBJECT, subject_id=str(workflow_id)
        )
    return WebhookDeliveriesPublic(items=[WebhookDeliveryPublic.from_delivery(d) for d in found])
