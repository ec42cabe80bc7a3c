"""Submitting, advancing and cancelling workflows: what the API, the worker and the sweep call.

Each step is checked with the task's own rules (``TaskService.resolve_model``:
a known agent, a valid and allowed model), with the step's name in the
message. A workflow's ``callback_url`` is checked as a task's is
(``TaskService.check_callback_url``), before the rate takes a token. A
workflow counts as one submission against the tenant's rate.

After a write, the tasks it created are published, and the tasks it asked to
cancel are cancelled as any cancel is (``TaskStore.request_cancel``). Both
happen after the commit; a crash in between is repaired by the relay
(unpublished tasks) and the sweep (uncancelled ones).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from ops_core.api.problems import describe_validation_errors
from ops_core.api.workflow_schemas import WorkflowCreate
from ops_core.db.access import Quotas
from ops_core.db.store import TaskStore
from ops_core.db.workflows import (
    TASK_FIELDS,
    Advanced,
    NewStep,
    NewWorkflow,
    WorkflowPage,
    WorkflowStore,
    WorkflowView,
)
from ops_core.errors import IdempotencyConflict, InvalidRequest, TaskFinished
from ops_core.services.tasks import TaskService, _same_json
from ops_core.tenancy import EVERY_TENANT, TenantScope
from ops_core.workflow_lifecycle import WorkflowStatus
from ops_core.workflow_spec import validate

log = logging.getLogger(__name__)


class WorkflowService:
    def __init__(self, workflows: WorkflowStore, store: TaskStore, tasks: TaskService) -> None:
        self._workflows = workflows
        self._store = store
        self._tasks = tasks

    async def submit(self, request: WorkflowCreate, *, tenant: str) -> tuple[WorkflowView, bool]:
        """Store the workflow and start its roots; ``(workflow, created)``. A repeated idempotency key
        returns the first workflow, or 409 if the request differs."""
        resolved = await self._resolve(request)
        quotas = await self._tasks.admit(tenant)
        self._check_tenant(request, resolved, quotas, tenant)
        steps: list[NewStep] = []
        for step, model in zip(request.steps, resolved, strict=True):
            task = self._tasks.new_task(
                tenant=tenant,
                agent=step.agent,
                goal=step.goal,
                input=step.input,
                model=model,
                max_retries=step.max_retries,
                timeout_seconds=step.timeout_seconds,
                priority=step.priority,
                schedule_to_start_seconds=step.schedule_to_start_seconds,
                concurrency_key=step.concurrency_key,
                concurrency_limit=step.concurrency_limit,
            )
            steps.append(
                NewStep(
                    name=step.name,
                    task={name: getattr(task, name) for name in TASK_FIELDS},
                    depends_on=step.depends_on,
                    continue_on_failure=step.continue_on_failure,
                )
            )
        asked = request.model_dump(mode="json")
        new = NewWorkflow(
            tenant=tenant,
            steps=steps,
            request=asked,
            idempotency_key=request.idempotency_key,
            callback_url=request.callback_url,
        )
        advanced = await self._workflows.create(new)
        if not advanced.created:
            existing = advanced.view.workflow
            if not _same_json(existing.request, asked):
                raise IdempotencyConflict(
                    f"idempotency_key {request.idempotency_key!r} was used for workflow {existing.id} with a"
                    " different request; use a new key for a new request"
                )
            return advanced.view, False
        await self._carry_out(advanced)
        return advanced.view, True

    async def submit_template(
        self, template: Mapping[str, Any], *, tenant: str, idempotency_key: str | None = None
    ) -> tuple[WorkflowView, bool]:
        """Start a workflow from a stored template (a schedule's, say): the body ``POST /v1/workflows``
        takes, as a mapping. ``idempotency_key`` (e.g. schedule id + tick) makes a repeated call start it once."""
        body = dict(template)
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        try:
            request = WorkflowCreate.model_validate(body)
        except ValidationError as exc:
            raise InvalidRequest(f"workflow template: {describe_validation_errors(exc.errors())}") from None
        return await self.submit(request, tenant=tenant)

    async def check(self, request: WorkflowCreate, *, tenant: str, quotas: Quotas) -> None:
        """Refuse, as :meth:`submit` would, a workflow that cannot start (the step named), without starting
        it or counting it against the tenant's rate: a schedule's template, checked when it is created."""
        self._check_tenant(request, await self._resolve(request), quotas, tenant)

    async def _resolve(self, request: WorkflowCreate) -> builtins.list[str]:
        """Check the workflow's shape and its callback_url; each step's model, resolved and checked against
        the server's rules."""
        validate(request.steps)
        resolved: builtins.list[str] = []
        for step in request.steps:
            try:
                resolved.append(self._tasks.resolve_model(step.agent, step.model))
            except InvalidRequest as exc:
                raise type(exc)(f"step {step.name!r}: {exc.message}") from None
        if request.callback_url is not None:
            # Before the quota takes a token: a refused URL costs the tenant nothing.
            await self._tasks.check_callback_url(request.callback_url)
        return resolved

    def _check_tenant(self, request: WorkflowCreate, resolved: builtins.list[str], quotas: Quotas, tenant: str) -> None:
        for step, model in zip(request.steps, resolved, strict=True):
            try:
                self._tasks.check_tenant_model(quotas, tenant, model)
            except InvalidRequest as exc:
                raise type(exc)(f"step {step.name!r}: {exc.message}") from None

    async def list(
        self, *, tenant: TenantScope, status: WorkflowStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> WorkflowPage:
        return await self._workflows.list(tenant=tenant, status=status, limit=limit, cursor=cursor)

    async def get(self, workflow_id: UUID, *, tenant: TenantScope) -> WorkflowView:
        return await self._workflows.get(workflow_id, tenant=tenant)

    async def cancel(self, workflow_id: UUID, *, tenant: TenantScope) -> WorkflowView:
        """Cancel the workflow and every step: not started ones are skipped, started ones cancelled."""
        await self._carry_out(await self._workflows.cancel(workflow_id, tenant=tenant))
        # Settles the steps whose tasks the cancel ended at once (they were pending or waiting).
        return (await self.advance(workflow_id)).view

    async def due(self) -> builtins.list[UUID]:
        """Workflows left behind by a step's end (see :class:`~ops_core.worker.workflow_sweep.WorkflowSweep`)."""
        return await self._workflows.due()

    async def advance(self, workflow_id: UUID) -> Advanced:
        """Advance the workflow (a step's task ended, or the sweep found one) and carry out what it decided."""
        advanced = await self._workflows.advance(workflow_id)
        await self._carry_out(advanced)
        return advanced

    async def _carry_out(self, advanced: Advanced) -> None:
        for task in advanced.started:
            await self._tasks.publish(task)
        for task_id in advanced.cancel:
            # A task that ended meanwhile is settled by the next advance.
            with contextlib.suppress(TaskFinished):
                await self._store.request_cancel(task_id, tenant=EVERY_TENANT)
