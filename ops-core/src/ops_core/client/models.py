"""What the SDK sends and receives, as pydantic models mirroring the API's JSON.

Fields the API may add later are kept (``extra="allow"``), so a newer server
does not break an older SDK and ``model_dump(mode="json")`` gives back what the
API sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ops_core.lifecycle import TaskStatus

JsonObject = dict[str, JsonValue]

#: At most this many tasks go in one ``POST /v1/tasks/batch``; ``submit_many`` splits longer lists.
MAX_BATCH = 1000


class _Received(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class TaskError(_Received):
    type: str
    message: str


class Usage(_Received):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    reused_tokens: int = 0


class TaskSummary(_Received):
    """A task without its large fields: the items of a listing."""

    id: UUID
    tenant: str
    agent: str
    goal: str
    model: str
    status: TaskStatus
    cancel_requested: bool
    error: TaskError | None
    attempts: int
    max_retries: int
    usage: Usage
    priority: int
    idempotency_key: str | None
    timeout_seconds: int
    schedule_to_start_seconds: int | None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    worker_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal


class Task(TaskSummary):
    """A task with everything: input, result and every attempt's error."""

    input: JsonObject
    result: JsonValue
    attempt_errors: list[JsonObject]


class TaskPage(_Received):
    items: list[TaskSummary]
    next_cursor: str | None


class TaskEvent(_Received):
    """One recorded event of a task's log; ``seq`` numbers them from 1, once each."""

    seq: int
    task_id: UUID
    attempt: int
    type: str
    payload: JsonObject
    created_at: datetime

    @property
    def is_terminal(self) -> bool:
        """The status event that ends a task's stream: a move into completed, failed or cancelled."""
        if self.type != "status":
            return False
        to = self.payload.get("to")
        return isinstance(to, str) and to in _TERMINAL


class LiveEvent(_Received):
    """An event a stream sends with no id (live text): never stored, so it has no ``seq`` to resume from."""

    seq: None = None
    type: str
    payload: JsonObject

    @property
    def is_terminal(self) -> bool:
        return False


StreamEvent = TaskEvent | LiveEvent

_TERMINAL = frozenset(status.value for status in TaskStatus if status.is_terminal)


class Worker(_Received):
    id: str
    host: str
    pid: int
    concurrency: int
    started_at: datetime
    last_heartbeat: datetime
    current_task_ids: list[UUID]


class TaskRequest(BaseModel):
    """One task to submit: every per-task option ``POST /v1/tasks`` takes; None leaves the server's default."""

    model_config = ConfigDict(extra="forbid")

    goal: str
    agent: str | None = None
    input: JsonObject | None = None
    model: str | None = None
    idempotency_key: str | None = None
    max_retries: int | None = None
    timeout_seconds: int | None = None
    priority: int | None = None
    schedule_to_start_seconds: int | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    callback_url: str | None = None
    run_at: datetime | None = None
    delay_seconds: float | None = None
    session_id: UUID | None = None

    def body(self) -> JsonObject:
        """The JSON body: only the options given."""
        return self.model_dump(mode="json", exclude_none=True)


class ErrorDetail(_Received):
    code: str
    message: str


class BatchItem(_Received):
    """The outcome of one task of a batch, at its position in the request."""

    index: int
    outcome: Literal["created", "existing", "rejected"]
    task: Task | None = None
    error: ErrorDetail | None = None
    retry_after: float | None = Field(default=None, description="For a rate-limited item: seconds to wait.")


class BatchResult(_Received):
    """One :class:`BatchItem` per task sent, in order, and how many had each outcome."""

    items: list[BatchItem]
    created: int
    existing: int
    rejected: int

    @property
    def created_tasks(self) -> list[Task]:
        return [item.task for item in self.items if item.outcome == "created" and item.task is not None]

    @property
    def rejected_items(self) -> list[BatchItem]:
        return [item for item in self.items if item.outcome == "rejected"]
