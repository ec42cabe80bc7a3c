"""Request and response bodies of ``/v1/sessions``."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ops_core.api.schemas import MAX_NAME_CHARS, TaskErrorPublic
from ops_core.api.storable import StorableJsonObject, StorableText
from ops_core.db.models import Task
from ops_core.db.sessions import Session, SessionPage, Turns
from ops_core.domain import SessionStatus
from ops_core.lifecycle import COMPLETED, TaskStatus


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: StorableText = Field(
        default="default",
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="The agent every task of the session runs; a task naming another agent is refused.",
    )
    metadata: StorableJsonObject = Field(
        default_factory=dict, description="Your own JSON about the session (a user id, a channel); stored as given."
    )


class SessionPublic(BaseModel):
    id: UUID
    tenant: str
    agent: str
    metadata: dict[str, Any]
    status: SessionStatus = Field(description="open, or closed: a closed session takes no new tasks (409).")
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    @classmethod
    def from_session(cls, session: Session) -> SessionPublic:
        return cls(
            id=session.id,
            tenant=session.tenant,
            agent=session.agent,
            metadata=session.metadata,
            status=session.status,
            created_at=session.created_at,
            updated_at=session.updated_at,
            closed_at=session.closed_at,
        )


class TurnPublic(BaseModel):
    """One task of the session: the user's goal and, once it completed, the assistant's answer."""

    task_id: UUID
    status: TaskStatus
    in_conversation: bool = Field(
        description="Whether later turns see this one: only completed tasks are part of the conversation;"
        " a failed or cancelled task's goal went unanswered and is left out."
    )
    goal: str
    input: dict[str, Any]
    result: Any = Field(description="The answer; null until the task completes.")
    error: TaskErrorPublic | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_task(cls, task: Task) -> TurnPublic:
        error = None
        if task.error_type is not None:
            error = TaskErrorPublic(type=task.error_type, message=task.error_message or "")
        return cls(
            task_id=task.id,
            status=task.status,
            in_conversation=task.status is COMPLETED,
            goal=task.goal,
            input=task.input,
            result=task.result,
            error=error,
            created_at=task.created_at,
            finished_at=task.finished_at,
        )


class SessionDetail(SessionPublic):
    turns: list[TurnPublic] = Field(description="The newest ?turns= tasks of the session, in submission order.")
    turn_count: int = Field(description="How many tasks the session has in all.")

    @classmethod
    def from_turns(cls, session: Session, turns: Turns) -> SessionDetail:
        return cls(
            **SessionPublic.from_session(session).model_dump(),
            turns=[TurnPublic.from_task(task) for task in turns.items],
            turn_count=turns.total,
        )


class SessionsPublic(BaseModel):
    items: list[SessionPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page; null on the last.")

    @classmethod
    def from_page(cls, page: SessionPage) -> SessionsPublic:
        return cls(items=[SessionPublic.from_session(s) for s in page.items], next_cursor=page.next_cursor)
