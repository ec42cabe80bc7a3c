"""Sessions: multi-turn conversations whose turns are their tasks.

A session is a row (tenant, agent, metadata, open or closed). Its turns are
not stored a second time: they are the tasks submitted with its id, in
submission order ``(created_at, id)``. A completed task is a turn of the
conversation (its goal said by the user, its result answered by the
assistant); a failed or cancelled task is shown among the turns with its
status but is no part of the conversation a later turn sees: its question
went unanswered, as a message that failed to send. A task retried by hand
until it completes becomes part of it again.

One session's tasks run one at a time in submission order, through the slot
mechanism every concurrency key uses (rules.py, slots): they share an
internal key, :func:`session_key`, with limit 1. The key holds a ``#``, which
no client's ``concurrency_key`` may contain, so no client key can join or
block a session's group; and a session's key is strict, so a task starts only
once every older task of its session has finished. The turn of task N is
therefore written (N completed) before N+1 is claimed and reads its history.

Sessions are read and written far less often than tasks, so one Core
statement set serves both backends, as ``approvals.py`` does.
"""

from __future__ import annotations

import base64
import builtins
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ops_core.db.engine import database_errors, read_only
from ops_core.db.models import SESSIONS, TASKS, Task
from ops_core.db.rules import utcnow
from ops_core.db.store import decode_cursor
from ops_core.domain import SessionStatus
from ops_core.errors import SessionClosed, SessionNotFound
from ops_core.lifecycle import COMPLETED
from ops_core.tenancy import TenantScope, tenant_or_none

# '#' is outside the characters a client's concurrency_key may use (api/schemas.py): no collision.
SESSION_KEY_PREFIX = "#session/"


def session_key(session_id: uuid.UUID) -> str:
    """The internal concurrency key every task of the session carries (limit 1)."""
    return f"{SESSION_KEY_PREFIX}{session_id.hex}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A row of the ``sessions`` table (see :class:`~ops_core.db.models.SessionTable`)."""

    id: uuid.UUID
    tenant: str
    agent: str
    metadata: dict[str, Any]
    status: SessionStatus
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Session:
        return cls(
            id=row["id"],
            tenant=row["tenant"],
            agent=row["agent"],
            metadata=row["metadata"],
            status=SessionStatus(row["status"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            closed_at=row["closed_at"],
        )


@dataclass(frozen=True, slots=True)
class SessionPage:
    items: builtins.list[Session]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Turns:
    """The newest ``limit`` of a session's tasks, oldest first, and how many it has in all."""

    items: builtins.list[Task]
    total: int


_SESSION_COLUMNS = [
    SESSIONS.c.id,
    SESSIONS.c.tenant,
    SESSIONS.c.agent,
    SESSIONS.c.metadata,
    SESSIONS.c.status,
    SESSIONS.c.created_at,
    SESSIONS.c.updated_at,
    SESSIONS.c.closed_at,
]
_TASK_COLUMNS = [TASKS.c[name] for name in Task.__dataclass_fields__]


class SessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, *, tenant: str, agent: str, metadata: dict[str, Any]) -> Session:
        now = utcnow()
        session = Session(
            id=uuid.uuid4(),
            tenant=tenant,
            agent=agent,
            metadata=metadata,
            status=SessionStatus.OPEN,
            created_at=now,
            updated_at=now,
        )
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(
                insert(SESSIONS).values(
                    id=session.id,
                    tenant=tenant,
                    agent=agent,
                    metadata=metadata,
                    status=session.status.value,
                    created_at=now,
                    updated_at=now,
                )
            )
        return session

    async def get(self, session_id: uuid.UUID, *, tenant: TenantScope) -> Session:
        """The session, or :class:`SessionNotFound` (also for another tenant's)."""
        async with read_only(self.engine) as conn:
            row = (await conn.execute(self._one(session_id, tenant))).mappings().first()
        if row is None:
            raise _not_found(session_id)
        return Session.from_row(row)

    async def open_session(
        self, session_id: uuid.UUID, *, tenant: TenantScope, idempotency_key: str | None = None
    ) -> Session:
        """The session a new task joins: :class:`SessionClosed` once it is closed, unless the task
        repeats (by ``idempotency_key``) one it took while open: that answers with the first task."""
        session = await self.get(session_id, tenant=tenant)
        if session.status is not SessionStatus.OPEN and not (
            idempotency_key is not None and await self._has_turn(session_id, idempotency_key)
        ):
            raise SessionClosed(f"session {session_id} is closed; it takes no new tasks (start a new session)")
        return session

    async def _has_turn(self, session_id: uuid.UUID, idempotency_key: str) -> bool:
        query = select(TASKS.c.id).where(TASKS.c.session_id == session_id, TASKS.c.idempotency_key == idempotency_key)
        async with read_only(self.engine) as conn:
            return (await conn.execute(query.limit(1))).first() is not None

    async def list(
        self,
        *,
        tenant: TenantScope,
        status: SessionStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """Newest first, keyset-paginated on (created_at, id) so pages never skip or repeat."""
        query = select(*_SESSION_COLUMNS)
        if (scoped := tenant_or_none(tenant)) is not None:
            query = query.where(SESSIONS.c.tenant == scoped)
        if status is not None:
            query = query.where(SESSIONS.c.status == status.value)
        if agent is not None:
            query = query.where(SESSIONS.c.agent == agent)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            query = query.where(tuple_(SESSIONS.c.created_at, SESSIONS.c.id) < tuple_(created_at, last_id))
        query = query.order_by(SESSIONS.c.created_at.desc(), SESSIONS.c.id.desc()).limit(limit + 1)
        async with read_only(self.engine) as conn:
            rows = (await conn.execute(query)).mappings().all()
        sessions = [Session.from_row(row) for row in rows]
        items = sessions[:limit]
        more = len(sessions) > limit and items
        return SessionPage(items, _cursor(items[-1]) if more else None)

    async def close(self, session_id: uuid.UUID, *, tenant: TenantScope) -> Session:
        """open → closed; closing a closed session changes nothing. Tasks already submitted still run."""
        now = utcnow()
        scope = _scope(tenant)
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(
                update(SESSIONS)
                .where(SESSIONS.c.id == session_id, SESSIONS.c.status == SessionStatus.OPEN.value, *scope)
                .values(status=SessionStatus.CLOSED.value, closed_at=now, updated_at=now)
            )
            row = (await conn.execute(self._one(session_id, tenant))).mappings().first()
        if row is None:
            raise _not_found(session_id)
        return Session.from_row(row)

    async def turns(self, session_id: uuid.UUID, *, tenant: TenantScope, limit: int) -> Turns:
        """The session's newest ``limit`` tasks, oldest first (every status), and its task count."""
        await self.get(session_id, tenant=tenant)
        newest = (
            select(*_TASK_COLUMNS)
            .where(TASKS.c.session_id == session_id)
            .order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc())
            .limit(limit)
        )
        async with read_only(self.engine) as conn:
            rows = (await conn.execute(newest)).mappings().all()
            total = await conn.scalar(select(func.count()).select_from(TASKS).where(TASKS.c.session_id == session_id))
        return Turns([Task.from_row(row) for row in reversed(rows)], int(total or 0))

    async def history(self, task: Task, *, limit: int) -> builtins.list[Task]:
        """The conversation before ``task``: its session's newest ``limit`` completed tasks submitted
        before it, oldest first. Failed and cancelled tasks are no part of it (see the module docstring)."""
        if task.session_id is None:
            return []
        earlier = (
            select(*_TASK_COLUMNS)
            .where(
                TASKS.c.session_id == task.session_id,
                TASKS.c.status == COMPLETED.value,
                tuple_(TASKS.c.created_at, TASKS.c.id) < tuple_(task.created_at, task.id),
            )
            .order_by(TASKS.c.created_at.desc(), TASKS.c.id.desc())
            .limit(limit)
        )
        async with read_only(self.engine) as conn:
            rows = (await conn.execute(earlier)).mappings().all()
        return [Task.from_row(row) for row in reversed(rows)]

    async def has_later_task(self, task: Task) -> bool:
        """Whether the session of ``task`` has a task submitted after it."""
        later = select(TASKS.c.id).where(
            and_(
                TASKS.c.session_id == task.session_id,
                tuple_(TASKS.c.created_at, TASKS.c.id) > tuple_(task.created_at, task.id),
            )
        )
        async with read_only(self.engine) as conn:
            return (await conn.execute(later.limit(1))).first() is not None

    def _one(self, session_id: uuid.UUID, tenant: TenantScope) -> Select[Any]:
        return select(*_SESSION_COLUMNS).where(SESSIONS.c.id == session_id, *_scope(tenant))


def _scope(tenant: TenantScope) -> builtins.list[Any]:
    scoped = tenant_or_none(tenant)
    return [] if scoped is None else [SESSIONS.c.tenant == scoped]


def _cursor(session: Session) -> str:
    """The same cursor format as the task listing's (``store.decode_cursor`` reads both)."""
    raw = json.dumps([session.created_at.isoformat(), session.id.hex]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _not_found(session_id: uuid.UUID) -> SessionNotFound:
    return SessionNotFound(f"session {session_id} not found")
