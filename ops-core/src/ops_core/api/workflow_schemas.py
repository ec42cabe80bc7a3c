"""Request and response bodies of ``/v1/workflows``.

A step takes every option a task does (:class:`~ops_core.api.schemas.TaskCreate`,
whose checks it inherits), plus its name, ``depends_on`` and
``continue_on_failure``; except the ones that belong to the workflow
(``idempotency_key``, ``callback_url``) or make no sense for a step that starts
when its parents are done (``run_at``, ``delay_seconds``), which it refuses,
naming the step. The workflow's shape (cycles, names, which steps a
goal may quote) is checked by :mod:`ops_core.workflow_spec`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from ops_core.api.schemas import MAX_GOAL_CHARS, MAX_KEY_CHARS, TaskCreate, to_json
from ops_core.api.storable import StorableText
from ops_core.callback_urls import MAX_URL_CHARS as MAX_CALLBACK_URL_CHARS
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
    # A task's options a step refuses (see _not_on_a_step), without the task's limits, so that any value
    # gets the message saying where it belongs.
    callback_url: StorableText | None = Field(
        default=None, description="Refused on a step (422): set callback_url on the workflow."
    )
    run_at: AwareDatetime | None = Field(
        default=None, description="Refused on a step (422): a step starts when its depends_on are done."
    )
    delay_seconds: float | None = Field(
        default=None, description="Refused on a step (422): a step starts when its depends_on are done."
    )

    @field_validator("idempotency_key")
    @classmethod
    def _no_step_key(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("set idempotency_key on the workflow, not on a step")
        return value

    @model_validator(mode="after")
    def _one_delay(self) -> Self:
        """Replaces TaskCreate's check of run_at and delay_seconds: a step takes neither (nor a callback_url)."""
        if self.callback_url is not None:
            raise ValueError(
                f"step {self.name!r}: callback_url is not taken on a step; set it on the workflow, which POSTs"
                " the workflow's final record (every step's status and task) when it ends"
            )
        for option in ("run_at", "delay_seconds"):
            if getattr(self, option) is not None:
                raise ValueError(
                    f"step {self.name!r}: {option} is not taken on a step: a step starts when the steps in its"
                    " depends_on are done (a root step at once)"
                )
        if self.session_id is not None:
            raise ValueError(
                f"step {self.name!r}: session_id is not taken on a step: a step's goal quotes its parents'"
                " results instead ({{steps.NAME.result}})"
            )
        return self


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
    callback_url: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CALLBACK_URL_CHARS,
        description="http(s) URL to POST the workflow's final record to (what GET /v1/workflows/{id} answers) once"
        " it has ended (completed, failed or cancelled) and each of its steps has settled, signed the Standard"
        " Webhooks way with the tenant's secret (GET /v1/webhooks/secret), like a task's. Loopback, private and"
        " link-local addresses are refused unless OPSCORE_WEBHOOK_ALLOWED_HOSTS names the host.",
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
    callback_url: str | None = Field(description="Where the final record is POSTed when the workflow ends.")
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
            callback_url=workflow.callback_url,
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


def render_workflow(view: WorkflowView) -> str:
    """The body of a workflow's webhook: the record ``GET /v1/workflows/{id}`` answers."""
    return to_json(WorkflowPublic.from_view(view)).decode()


class WorkflowsPublic(BaseModel):
    items: list[WorkflowSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last.")

    @classmethod
    def from_page(cls, page: WorkflowPage) -> WorkflowsPublic:
        return cls(items=[WorkflowSummary.from_workflow(w) for w in page.items], next_cursor=page.next_cursor)
