"""Remote agents: their registrations, the attempts handed over to them, and the callbacks accepted.

* ``remote_agents``: one row per (tenant, name), with the URL and the shared
  secret. The secret is stored as given: signing a webhook needs it in clear,
  and no encryption key setting exists to seal it with, so it is protected as
  the database is (its access, its backups). It is never returned by the API.
* ``remote_runs``: an attempt :meth:`RemoteAgentStore.hand_over` gave to a
  remote agent. The hand-over is one write fenced on the attempt: the task
  stays ``running`` with ``worker_id = 'remote:<agent>'`` (which the orphan
  reaper leaves alone: no worker heartbeat speaks for it) and a lease that
  each accepted callback extends.
* ``remote_callbacks``: the ``webhook-id`` of each accepted callback, so a
  replay inside the signature's timestamp tolerance is refused too.

Rare next to claims and event writes, so one Core statement set serves both
backends, as ``approvals.py`` does.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ops_core.db.engine import database_errors, read_only
from ops_core.db.event_rows import add_events
from ops_core.db.models import REMOTE_AGENTS, REMOTE_CALLBACKS, REMOTE_RUNS, TASKS, NewEvent
from ops_core.db.rules import REMOTE_WORKER_PREFIX, utcnow
from ops_core.errors import AgentExists
from ops_core.lifecycle import RUNNING


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteAgent:
    tenant: str
    name: str
    url: str
    secret: str
    description: str
    model: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RemoteAgent:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteRun:
    """An attempt a remote agent holds, with what the watch needs to settle it."""

    task_id: uuid.UUID
    attempt: int
    tenant: str
    agent: str
    max_retries: int
    timeout_seconds: int
    claimed_at: datetime
    cancel_requested: bool
    lease_until: datetime
    cancel_sent_at: datetime | None


def remote_worker_id(agent: str) -> str:
    return REMOTE_WORKER_PREFIX + agent


# An attempt still held: its task is running that very attempt.
_HELD = and_(
    TASKS.c.id == REMOTE_RUNS.c.task_id,
    TASKS.c.status == RUNNING.value,
    TASKS.c.attempts == REMOTE_RUNS.c.attempt,
)


class RemoteAgentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # ---- registrations -------------------------------------------------------------------------

    async def register(
        self, *, tenant: str, name: str, url: str, secret: str, description: str, model: str | None
    ) -> RemoteAgent:
        agent = RemoteAgent(
            tenant=tenant, name=name, url=url, secret=secret, description=description, model=model, created_at=utcnow()
        )
        stmt = self._insert(REMOTE_AGENTS).values(**{f.name: getattr(agent, f.name) for f in fields(agent)})
        stmt = stmt.on_conflict_do_nothing(index_elements=[REMOTE_AGENTS.c.tenant, REMOTE_AGENTS.c.name])
        async with database_errors(), self.engine.begin() as conn:
            if (await conn.execute(stmt)).rowcount == 0:
                raise AgentExists(f"a remote agent named {name!r} is already registered")
        return agent

    async def get(self, tenant: str, name: str) -> RemoteAgent | None:
        stmt = select(REMOTE_AGENTS).where(REMOTE_AGENTS.c.tenant == tenant, REMOTE_AGENTS.c.name == name)
        async with read_only(self.engine) as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else RemoteAgent.from_row(row)

    async def list(self, tenant: str) -> builtins.list[RemoteAgent]:
        stmt = select(REMOTE_AGENTS).where(REMOTE_AGENTS.c.tenant == tenant).order_by(REMOTE_AGENTS.c.name)
        async with read_only(self.engine) as conn:
            return [RemoteAgent.from_row(row) for row in (await conn.execute(stmt)).mappings()]

    async def delete(self, tenant: str, name: str) -> bool:
        stmt = delete(REMOTE_AGENTS).where(REMOTE_AGENTS.c.tenant == tenant, REMOTE_AGENTS.c.name == name)
        async with database_errors(), self.engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    # ---- attempts held by remote agents -----------------------------------------------------------

    async def hand_over(
        self, task_id: uuid.UUID, attempt: int, *, agent: str, lease_until: datetime, events: Sequence[NewEvent]
    ) -> bool:
        """The delivered attempt leaves its worker for the remote agent; False if it no longer owns the task
        (cancelled or already finished by a quick callback)."""
        now = utcnow()
        stmt = (
            update(TASKS)
            .where(TASKS.c.id == task_id, TASKS.c.status == RUNNING.value, TASKS.c.attempts == attempt)
            .values(
                worker_id=remote_worker_id(agent),
                last_event_seq=TASKS.c.last_event_seq + len(events),
                updated_at=now,
            )
            .returning(TASKS.c.last_event_seq)
        )
        run = self._insert(REMOTE_RUNS).values(
            task_id=task_id, attempt=attempt, delivered_at=now, lease_until=lease_until, cancel_sent_at=None
        )
        run = run.on_conflict_do_update(
            index_elements=[REMOTE_RUNS.c.task_id],
            set_={"attempt": attempt, "delivered_at": now, "lease_until": lease_until, "cancel_sent_at": None},
        )
        async with database_errors(), self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return False
            await add_events(conn, task_id, row.last_event_seq, attempt, events, now)
            await conn.execute(run)
        return True

    async def extend_lease(self, task_id: uuid.UUID, attempt: int, lease_until: datetime) -> None:
        stmt = (
            update(REMOTE_RUNS)
            .where(REMOTE_RUNS.c.task_id == task_id, REMOTE_RUNS.c.attempt == attempt)
            .values(lease_until=lease_until)
        )
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(stmt)

    async def held(self) -> builtins.list[RemoteRun]:
        """Every attempt a remote agent holds now (one read per watch pass, for every worker)."""
        stmt = select(
            REMOTE_RUNS.c.task_id,
            REMOTE_RUNS.c.attempt,
            TASKS.c.tenant,
            TASKS.c.agent,
            TASKS.c.max_retries,
            TASKS.c.timeout_seconds,
            TASKS.c.claimed_at,
            TASKS.c.cancel_requested,
            REMOTE_RUNS.c.lease_until,
            REMOTE_RUNS.c.cancel_sent_at,
        ).select_from(REMOTE_RUNS.join(TASKS, _HELD))
        async with read_only(self.engine) as conn:
            return [RemoteRun(**row) for row in (await conn.execute(stmt)).mappings()]

    async def take_cancel(self, task_id: uuid.UUID, attempt: int) -> bool:
        """Whether this caller sends the attempt's cancel webhook: exactly one caller is told yes."""
        stmt = (
            update(REMOTE_RUNS)
            .where(
                REMOTE_RUNS.c.task_id == task_id,
                REMOTE_RUNS.c.attempt == attempt,
                REMOTE_RUNS.c.cancel_sent_at.is_(None),
            )
            .values(cancel_sent_at=utcnow())
        )
        async with database_errors(), self.engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def drop_settled(self) -> int:
        """Forget attempts whose task has moved on (finished, retried, cancelled)."""
        stmt = delete(REMOTE_RUNS).where(~exists().where(_HELD))
        async with database_errors(), self.engine.begin() as conn:
            return int((await conn.execute(stmt)).rowcount)

    # ---- replay protection -----------------------------------------------------------------------

    async def remember(self, msg_id: str) -> bool:
        """Record a callback's ``webhook-id``; False if it was seen before (a replay)."""
        stmt = self._insert(REMOTE_CALLBACKS).values(msg_id=msg_id, received_at=utcnow())
        stmt = stmt.on_conflict_do_nothing(index_elements=[REMOTE_CALLBACKS.c.msg_id])
        async with database_errors(), self.engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def forget(self, msg_id: str) -> None:
        """A callback that changed nothing may be sent again with its id."""
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(delete(REMOTE_CALLBACKS).where(REMOTE_CALLBACKS.c.msg_id == msg_id))

    async def prune_callbacks(self, before: datetime) -> None:
        """Ids older than the timestamp tolerance: their signatures are refused as too old anyway."""
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(delete(REMOTE_CALLBACKS).where(REMOTE_CALLBACKS.c.received_at < before))
