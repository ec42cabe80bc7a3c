"""The bodies of ``POST /v1/tasks/batch``: many tasks in, one outcome per task out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ops_core.api.schemas import ErrorDetail, TaskPublic

MAX_BATCH = 1000


class TaskBatchCreate(BaseModel):
    """Up to 1,000 tasks. The body's shape is checked as a whole (422 if it is wrong: not an object, no
    ``tasks``, an empty list or more than 1,000, an item that is not an object); each item is then
    checked on its own, and an invalid item is rejected without stopping the others."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        # Documented as plain objects, for that is what is accepted: each is checked against TaskCreate
        # on its own, and one that fails is rejected in the answer, not with a 422 for the request.
        description="Each a POST /v1/tasks body (TaskCreate), checked on its own: an invalid one is rejected"
        " in its item of the answer.",
    )


class BatchItemPublic(BaseModel):
    index: int = Field(description="The item's position in the request's tasks, from 0.")
    outcome: Literal["created", "existing", "rejected"] = Field(
        description="created; existing: its idempotency_key named a task submitted before with the same request;"
        " rejected: see error."
    )
    task: TaskPublic | None = Field(default=None, description="The task, unless rejected.")
    error: ErrorDetail | None = Field(
        default=None, description="Why it was rejected: the code and message POST /v1/tasks would have answered."
    )
    retry_after: float | None = Field(
        default=None, description="For rate_limited and token_budget_exceeded: seconds before trying it again."
    )


class TaskBatchPublic(BaseModel):
    items: list[BatchItemPublic] = Field(description="One per task sent, in the same order.")
    created: int
    existing: int
    rejected: int
