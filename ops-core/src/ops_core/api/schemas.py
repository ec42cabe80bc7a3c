"""Request and response bodies of the v1 API.

These are the public contract, deliberately separate from the table models:
a column can be renamed or split without changing what clients see, and no
internal field (lease tokens, publish bookkeeping) leaks out by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ops_core.db.models import Task, WorkerView
from ops_core.lifecycle import TaskStatus

MAX_GOAL_CHARS = 20_000
MAX_KEY_CHARS = 200
MAX_NAME_CHARS = 200
MAX_PRIORITY = 9


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str = Field(min_length=1, max_length=MAX_GOAL_CHARS, description="What the agent should do.")
    agent: str = Field(default="default", min_length=1, max_length=MAX_NAME_CHARS)
    input: dict[str, Any] = Field(default_factory=dict, description="Structured input handed to the agent.")
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="agentkit model string, e.g. 'openai:gpt-4o-mini'; defaults to the agent's, then the server's.",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="Submitting the same key again returns the first task (200) instead of creating one.",
    )
    max_retries: int | None = Field(default=None, ge=0, le=100)
    timeout_seconds: int | None = Field(default=None, gt=0, description="Wall-clock limit of one attempt.")
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY, description="RabbitMQ priority: 9 runs first.")
    schedule_to_start_seconds: int | None = Field(
        default=None, gt=0, description="Fail the task if no worker has started it this long after submission."
    )

    @field_validator("goal")
    @classmethod
    def _goal_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class TaskErrorPublic(BaseModel):
    type: str
    message: str


class UsagePublic(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    reused_tokens: int = Field(description="Input tokens served from a provider's prompt cache.")


class TaskPublic(BaseModel):
    id: UUID
    agent: str
    goal: str
    input: dict[str, Any]
    model: str
    status: TaskStatus
    cancel_requested: bool = Field(description="A cancel was asked for; a running task stops at its next step.")
    result: Any
    error: TaskErrorPublic | None
    attempts: int
    max_retries: int = Field(description="Retries the task was submitted with.")
    attempt_errors: list[dict[str, Any]]
    usage: UsagePublic
    priority: int
    idempotency_key: str | None
    timeout_seconds: int
    schedule_to_start_seconds: int | None
    worker_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_task(cls, task: Task) -> TaskPublic:
        error = None
        if task.error_type is not None:
            error = TaskErrorPublic(type=task.error_type, message=task.error_message or "")
        return cls(
            id=task.id,
            agent=task.agent,
            goal=task.goal,
            input=task.input,
            model=task.model,
            status=task.status,
            cancel_requested=task.cancel_requested,
            result=task.result,
            error=error,
            attempts=task.attempts,
            # Manual retries raise the stored limit; clients see what they asked for.
            max_retries=task.configured_max_retries,
            attempt_errors=task.attempt_errors,
            usage=UsagePublic(
                input_tokens=task.input_tokens,
                output_tokens=task.output_tokens,
                total_tokens=task.input_tokens + task.output_tokens,
                reused_tokens=task.reused_tokens,
            ),
            priority=task.priority,
            idempotency_key=task.idempotency_key,
            timeout_seconds=task.timeout_seconds,
            schedule_to_start_seconds=task.schedule_to_start_seconds,
            worker_id=task.worker_id,
            created_at=task.created_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            updated_at=task.updated_at,
        )


class TasksPublic(BaseModel):
    items: list[TaskPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last.")


class TaskEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    task_id: UUID
    attempt: int
    type: str
    payload: dict[str, Any]
    created_at: datetime


class TaskEventsPublic(BaseModel):
    items: list[TaskEventPublic]


class WorkerPublic(BaseModel):
    id: str
    host: str
    pid: int
    concurrency: int
    started_at: datetime
    last_heartbeat: datetime
    current_task_ids: list[UUID]

    @classmethod
    def from_view(cls, view: WorkerView) -> WorkerPublic:
        return cls(
            id=view.id,
            host=view.host,
            pid=view.pid,
            concurrency=view.concurrency,
            started_at=view.started_at,
            last_heartbeat=view.last_heartbeat,
            current_task_ids=view.running_task_ids,
        )


class WorkersPublic(BaseModel):
    items: list[WorkerPublic]


class HealthPublic(BaseModel):
    status: str


class ReadinessPublic(BaseModel):
    status: str
    checks: dict[str, str] = Field(description="'ok', or why that dependency is not ready.")
