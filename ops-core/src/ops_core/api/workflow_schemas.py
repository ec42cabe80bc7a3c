"""Request and response bodies of ``/v1/workflows``.

A step takes every option a task does (:class:`~ops_core.api.schemas.TaskCreate`,
whose checks it inherits), plus its name, ``depends_on`` and
``continue_on_failure``. The workflow's shape (cycles, names, which steps a
goal may quote) is checked by :mod:`ops_core.workflow_spec`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ops_core.api.schemas import MAX_GOAL_CHARS, MAX_KEY_CHARS, TaskCreate
from ops_core.api.storable import StorableText
from ops_core.db.workflows import Step, Workflow, WorkflowPage, WorkflowView
from ops_core.lifecycle import TaskStatus
from ops_core.workflow_lifecycle import StepStatus, WorkflowStatus
from ops_core.workflow_spec import MAX_STEP_NAME_CHARS, MAX_STEPS, STEP_NAME_PATTERN


class WorkflowStepCreate(TaskCreate):
    name: str = Field(
        min_length=1,
        max_length=MAX_STEP_NAME_CHARS,
        pattern=STEP_NAME_PATTERN,
        description="Unique within the workflow; other steps name it in depends_on and {{steps.NAME.result}}.",
    )
    goal: StorableText = Field(
        min_length=1,
        max_length=MAX_GOAL_CHARS,
        description="What the agent should do; may quote ancestors: {{steps.NAME.result}},"
        " {{steps.NAME.result.FIELD}}, {{steps.NAME.status}}, {{steps.NAME.error}}.",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description="The steps that must be done before this one starts.",
    )
    continue_on_failure: bool = Field(
        default=False,
        description="If this step fails or is cancelled, the workflow goes on, and its dependents still start"
        " (its result quotes as empty; quote {{steps.NAME.status}} and {{steps.NAME.error}}).",
    )

    @field_validator("idempotency_key")
    @classmethod
    def _no_step_key(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("set idempotency_key on the workflow, not on a step")
        return value


class WorkflowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[WorkflowStepCreate] = Field(min_length=1, max_length=MAX_STEPS)
    idempotency_key: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="Submitting the same workflow with the same key again returns the first one (200);"
        " the same key with a different request is refused (409).",
    )


class WorkflowStepPublic(BaseModel):
    name: str
    status: StepStatus = Field(description="blocked, started, completed, failed, cancelled or skipped.")
    agent: str
    depends_on: list[str]
    continue_on_failure: bool
    task_id: UUID | None = Field(description="The step's task, once it started: read it at /v1/tasks/{id}.")
    task_status: TaskStatus | None
    error: str | None = Field(description="The error message of the step's task, when it failed.")
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_step(cls, step: Step) -> Self:
        return cls(
            name=step.name,
            status=step.status,
            agent=step.agent,
            depends_on=step.depends_on,
            continue_on_failure=step.continue_on_failure,
            task_id=step.task_id,
            task_status=step.task_status,
            error=step.task_error,
            started_at=step.started_at,
            finished_at=step.finished_at,
        )


class WorkflowSummary(BaseModel):
    id: UUID
    tenant: str
    status: WorkflowStatus = Field(description="running, completed, failed or cancelled.")
    reason: str | None = Field(description="Why it ended: the step that failed, or a cancel.")
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_workflow(cls, workflow: Workflow) -> Self:
        return cls(
            id=workflow.id,
            tenant=workflow.tenant,
            status=workflow.status,
            reason=workflow.reason,
            idempotency_key=workflow.idempotency_key,
            created_at=workflow.created_at,
            updated_at=workflow.updated_at,
            finished_at=workflow.finished_at,
        )


class WorkflowPublic(WorkflowSummary):
    steps: list[WorkflowStepPublic] = Field(description="Every step in submission order, with its task.")

    @classmethod
    def from_view(cls, view: WorkflowView) -> Self:
        summary = WorkflowSummary.from_workflow(view.workflow).model_dump()
        return cls(**summary, steps=[WorkflowStepPublic.from_step(step) for step in view.steps])


class WorkflowsPublic(BaseModel):
    items: list[WorkflowSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last.")

    @classmethod
    def from_page(cls, page: WorkflowPage) -> WorkflowsPublic:
        return cls(items=[WorkflowSummary.from_workflow(w) for w in page.items], next_cursor=page.next_cursor)
