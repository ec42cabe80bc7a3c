"""Request and response bodies of the v1 API.

These are the public contract, deliberately separate from the table models:
a column can be renamed or split without changing what clients see, and no
internal field (lease tokens, publish bookkeeping) leaks out by accident.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticSerializationError

from ops_core.api.storable import MAX_INPUT_BYTES, MAX_JSON_DEPTH, StorableJsonObject, StorableText
from ops_core.callback_urls import MAX_URL_CHARS as MAX_CALLBACK_URL_CHARS
from ops_core.config import MAX_SCHEDULE_TO_START_SECONDS, MAX_TIMEOUT_SECONDS
from ops_core.db.engine import json_dumps
from ops_core.db.models import Task, TaskPage, WorkerView
from ops_core.lifecycle import TaskStatus

MAX_GOAL_CHARS = 20_000
MAX_KEY_CHARS = 200
MAX_NAME_CHARS = 200
MAX_PRIORITY = 9
MAX_CONCURRENCY_LIMIT = 10_000
# A delayed task waits in the database, so days are safe; beyond a year is a mistake, not a plan.
MAX_DELAY_SECONDS = 366 * 86_400
# Safe in a URL, a shell, a log line and a metric label; enough for "customer:42" or "repo:org/name".
CONCURRENCY_KEY_CHARS = "letters, digits and _ - . : / @ + ="
CONCURRENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:/@+=-]+$"
_CONCURRENCY_KEY = re.compile(CONCURRENCY_KEY_PATTERN)


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: e.g. validation_error, task_not_found, unavailable.")
    message: str = Field(description="What went wrong, naming the field or value at fault.")


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: ErrorDetail


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: StorableText = Field(min_length=1, max_length=MAX_GOAL_CHARS, description="What the agent should do.")
    agent: StorableText = Field(default="default", min_length=1, max_length=MAX_NAME_CHARS)
    input: StorableJsonObject = Field(
        default_factory=dict,
        description=f"Structured input handed to the agent: at most {MAX_JSON_DEPTH} levels deep and"
        f" {MAX_INPUT_BYTES} bytes of JSON, finite numbers, no NUL characters.",
    )
    model: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="agentkit model string, e.g. 'openai:gpt-4o-mini'; defaults to the agent's, then the server's.",
    )
    idempotency_key: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="Submitting the same request with the same key again returns the first task (200) instead"
        " of creating one; the same key with a different request is refused (409).",
    )
    max_retries: int | None = Field(default=None, ge=0, le=100)
    timeout_seconds: int | None = Field(
        default=None, gt=0, le=MAX_TIMEOUT_SECONDS, description="Wall-clock limit of one attempt."
    )
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY, description="RabbitMQ priority: 9 runs first.")
    schedule_to_start_seconds: int | None = Field(
        default=None,
        gt=0,
        le=MAX_SCHEDULE_TO_START_SECONDS,
        description="Fail the task if no worker has started it this long after submission.",
    )
    concurrency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="At most concurrency_limit of the tenant's tasks with this key run at once, across every"
        f" worker; the others wait in submission order. Keys are per tenant. Only {CONCURRENCY_KEY_CHARS}.",
        # Documented, and checked by _key_is_safe, whose message names the characters instead of a regex.
        json_schema_extra={"pattern": CONCURRENCY_KEY_PATTERN},
    )
    concurrency_limit: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENCY_LIMIT,
        description="How many tasks with concurrency_key may run at once (default 1); needs concurrency_key.",
    )
    session_id: UUID | None = Field(
        default=None,
        description="Continue this session's conversation: the agent sees its earlier completed turns, and the"
        " session's tasks run one at a time in submission order. The task takes the session's agent.",
    )
    callback_url: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CALLBACK_URL_CHARS,
        description="http(s) URL to POST the final record to when the task ends (completed, failed or cancelled),"
        " signed the Standard Webhooks way with the tenant's secret (GET /v1/webhooks/secret). Loopback, private"
        " and link-local addresses are refused unless OPSCORE_WEBHOOK_ALLOWED_HOSTS names the host.",
    )

    run_at: AwareDatetime | None = Field(
        default=None,
        description="Start no earlier than this (ISO 8601 with a UTC offset); held in the database until then."
        " A time in the past runs at once. At most a year ahead.",
    )
    delay_seconds: float | None = Field(
        default=None,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="Start no earlier than this many seconds from now; not with run_at.",
    )

    @model_validator(mode="after")
    def _one_delay(self) -> Self:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        if self.run_at is not None and self.run_at - datetime.now(UTC) > timedelta(seconds=MAX_DELAY_SECONDS):
            raise ValueError(f"run_at: at most {MAX_DELAY_SECONDS // 86_400} days ahead")
        return self

    def not_before(self) -> datetime | None:
        """When the task may start: None for at once (also for a run_at already past)."""
        now = datetime.now(UTC)
        when = self.run_at if self.delay_seconds is None else now + timedelta(seconds=self.delay_seconds)
        return when if when is not None and when > now else None

    @field_validator(
        "max_retries",
        "timeout_seconds",
        "priority",
        "schedule_to_start_seconds",
        "concurrency_limit",
        "delay_seconds",
        mode="before",
    )
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        # JSON's true is no number; pydantic's lax mode would take it for 1.
        if isinstance(value, bool):
            raise ValueError("must be an integer, not true or false")
        return value

    @field_validator("goal")
    @classmethod
    def _goal_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("concurrency_key")
    @classmethod
    def _key_is_safe(cls, value: str | None) -> str | None:
        if value is not None and not _CONCURRENCY_KEY.fullmatch(value):
            raise ValueError(f"may contain only {CONCURRENCY_KEY_CHARS}")
        return value

    @field_validator("concurrency_limit")
    @classmethod
    def _limit_has_a_key(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("concurrency_key") is None:
            raise ValueError("needs a concurrency_key: the limit applies to the tasks that share a key")
        return value


class TaskErrorPublic(BaseModel):
    type: str
    message: str


class UsagePublic(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    reused_tokens: int = Field(description="Input tokens served from a provider's prompt cache.")


class TaskSummary(BaseModel):
    """A task without its large fields (input, result, attempt_errors): the items of a listing."""

    id: UUID
    tenant: str
    agent: str
    goal: str
    model: str
    status: TaskStatus
    cancel_requested: bool = Field(description="A cancel was asked for; a running task stops at its next step.")
    error: TaskErrorPublic | None
    attempts: int
    max_retries: int = Field(description="Retries the task was submitted with.")
    usage: UsagePublic
    priority: int
    idempotency_key: str | None
    timeout_seconds: int
    schedule_to_start_seconds: int | None
    concurrency_key: str | None = Field(description="At most concurrency_limit tasks with this key run at once.")
    concurrency_limit: int | None
    session_id: UUID | None = Field(default=None, description="The session this task is a turn of.")
    callback_url: str | None = Field(default=None, description="Where the final record is POSTed when it ends.")
    worker_id: str | None
    run_after: datetime | None = Field(
        description="Not started before this: a delayed task's run_at, or a retry's backoff; null: at once."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_task(cls, task: Task) -> Self:
        return cls(**_summary_fields(task))


class TaskPublic(TaskSummary):
    """A task with everything: what ``GET /v1/tasks/{id}`` and the task's own actions answer."""

    input: dict[str, Any]
    result: Any
    attempt_errors: list[dict[str, Any]]

    @classmethod
    def from_task(cls, task: Task) -> Self:
        return cls(**_summary_fields(task), input=task.input, result=task.result, attempt_errors=task.attempt_errors)


def _summary_fields(task: Task) -> dict[str, Any]:
    error = None
    if task.error_type is not None:
        error = TaskErrorPublic(type=task.error_type, message=task.error_message or "")
    return {
        "id": task.id,
        "tenant": task.tenant,
        "agent": task.agent,
        "goal": task.goal,
        "model": task.model,
        "status": task.status,
        "cancel_requested": task.cancel_requested,
        "error": error,
        "attempts": task.attempts,
        # Manual retries raise the stored limit; clients see what they asked for.
        "max_retries": task.configured_max_retries,
        "usage": UsagePublic(
            input_tokens=task.input_tokens,
            output_tokens=task.output_tokens,
            total_tokens=task.input_tokens + task.output_tokens,
            reused_tokens=task.reused_tokens,
        ),
        "priority": task.priority,
        "idempotency_key": task.idempotency_key,
        "timeout_seconds": task.timeout_seconds,
        "schedule_to_start_seconds": task.schedule_to_start_seconds,
        # A session's internal key is the session's business, not the client's.
        "concurrency_key": task.concurrency_key if task.session_id is None else None,
        "concurrency_limit": task.concurrency_limit if task.session_id is None else None,
        "session_id": task.session_id,
        "callback_url": task.callback_url,
        "worker_id": task.worker_id,
        "run_after": task.run_after,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "updated_at": task.updated_at,
    }


def to_json(body: BaseModel) -> bytes:
    """``body`` as JSON, also when it holds what pydantic's serialiser refuses to write.

    New input is checked (see :mod:`ops_core.api.storable`), but rows stored
    before those checks, and results an agent produced, may nest deeper than
    pydantic goes (255 levels) or hold a lone surrogate (SQLite keeps it as an
    escape); the standard library's encoder writes those instead of the read failing.
    """
    try:
        return body.model_dump_json().encode()
    except PydanticSerializationError:
        return json_dumps(body.model_dump()).encode()


class TasksPublic(BaseModel):
    items: list[TaskSummary] = Field(description="Summaries: read a task by id for its input, result and errors.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last.")

    @classmethod
    def from_page(cls, page: TaskPage) -> TasksPublic:
        return cls(items=[TaskSummary.from_task(task) for task in page.items], next_cursor=page.next_cursor)


class TaskEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    task_id: UUID
    attempt: int
    type: str
    payload: dict[str, Any]
    created_at: datetime


class StatusChangePublic(BaseModel):
    """A task's status event on a tenant's stream: ``payload`` has ``from``, ``to`` and ``reason``."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The event row's id: resume after it with Last-Event-ID.")
    task_id: UUID
    agent: str
    seq: int
    attempt: int
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
