"""Request and response bodies of ``/v1/approvals`` and ``/v1/tasks/{id}/approvals/{call_id}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ops_core.api.storable import StorableJsonObject, StorableText
from ops_core.domain import ApprovalStatus
from ops_core.lifecycle import TaskStatus


class ApprovalDecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    reason: StorableText | None = Field(default=None, min_length=1, max_length=2000)
    arguments: StorableJsonObject | None = Field(
        default=None,
        description="Approve with these arguments instead of the model's; checked against the tool's schema (422).",
    )


class ApprovalPublic(BaseModel):
    """A tool call that waits (or waited) for a person's decision."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    task_id: UUID
    tenant: str
    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    reason: str = Field(description="Why the policy asks for approval.")
    status: ApprovalStatus
    requested_at: datetime
    expires_at: datetime = Field(description="Unanswered by then, the call is denied as timed out.")
    decided_at: datetime | None
    decided_by: str | None = Field(description="The id of the key that decided, or 'timeout'.")
    decision_reason: str | None
    edited_arguments: dict[str, Any] | None


class ApprovalsPublic(BaseModel):
    items: list[ApprovalPublic]


class ApprovalDecided(BaseModel):
    approval: ApprovalPublic
    task_status: TaskStatus = Field(description="pending once every call the task waited on is decided.")
