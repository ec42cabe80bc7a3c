"""Approvals: parking a run for a person's decision, recording the decisions, and bringing it back.

* :meth:`ApprovalStore.suspend`: running → waiting, fenced on the attempt like
  every worker write. It stores the checkpoint (which names the calls waited
  on), the step's tokens and one ``approvals`` row per call, and gives the
  attempt back: waiting is not failing, and must not use up retries.
* :meth:`ApprovalStore.decide`: one pending call → approved, denied or
  timed_out, with an ``approval_decided`` event. The step's last decision
  moves the task waiting → pending, to resume on any worker. Every decision
  first takes the task's row (an UPDATE), so decisions on one task run one
  at a time and exactly one of them sees no call left pending.
* :meth:`ApprovalStore.expire`: the calls nobody answered in time, decided
  as timed out (by the worker's reaper).

Approvals are rare next to claims and event writes, so one Core statement set
serves both backends, as ``access.py`` does.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ops_core.db.engine import database_errors, read_only
from ops_core.db.event_rows import add_events
from ops_core.db.models import APPROVALS, TASKS, NewEvent, Task
from ops_core.db.rules import RESUME, SUSPEND, status_event, utcnow
from ops_core.db.store import not_found
from ops_core.domain import ApprovalStatus, EventType
from ops_core.errors import ApprovalNotFound, NotWaiting
from ops_core.lifecycle import WAITING
from ops_core.tenancy import EVERY_TENANT, TenantScope, tenant_or_none

PENDING_APPROVAL = ApprovalStatus.PENDING.value
# The reaper decides this many expired calls per pass; the rest wait for the next pass.
EXPIRE_BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class NewApproval:
    """A call the run waits on: step and call id name it within its task."""

    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """A row of the ``approvals`` table (see :class:`~ops_core.db.models.ApprovalTable`)."""

    id: uuid.UUID
    task_id: uuid.UUID
    tenant: str
    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    status: ApprovalStatus
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    edited_arguments: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Approval:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["status"] = ApprovalStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What a person (or the timeout) answered for one call."""

    status: ApprovalStatus
    decided_by: str
    reason: str | None = None
    # Edited arguments, already checked against the tool's schema; only with APPROVED.
    arguments: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status is ApprovalStatus.PENDING:
            raise ValueError("a decision cannot leave the call pending")
        if self.arguments is not None and self.status is not ApprovalStatus.APPROVED:
            raise ValueError("only an approval can carry edited arguments")


@dataclass(frozen=True, slots=True)
class Decided:
    approval: Approval
    # The task as this decision left it; pending when it was the step's last decision.
    task: Task


class ApprovalStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def suspend(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        checkpoint: dict[str, Any],
        approvals: Sequence[NewApproval],
        input_tokens: int,
        output_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        """running → waiting for ``approvals``; False if ``attempt`` no longer owns the task, or a cancel
        was requested (which the run then carries out)."""
        now = utcnow()
        closing = [*events, status_event(SUSPEND, attempt=attempt, calls=[a.call_id for a in approvals])]
        stmt = (
            update(TASKS)
            # A cancel requested meanwhile wins: the run ends cancelled instead of waiting.
            .where(
                TASKS.c.id == task_id,
                TASKS.c.status == SUSPEND.source.value,
                TASKS.c.attempts == attempt,
                TASKS.c.cancel_requested.is_(False),
            )
            .values(
                status=SUSPEND.to.value,
                checkpoint=checkpoint,
                input_tokens=TASKS.c.input_tokens + input_tokens,
                output_tokens=TASKS.c.output_tokens + output_tokens,
                attempts=TASKS.c.attempts - 1,
                last_event_seq=TASKS.c.last_event_seq + len(closing),
                updated_at=now,
            )
            .returning(TASKS.c.tenant, TASKS.c.last_event_seq)
        )
        async with database_errors(), self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return False
            await add_events(conn, task_id, row.last_event_seq, attempt, closing, now)
            await self._ask(conn, task_id, row.tenant, approvals, now)
        return True

    async def _ask(
        self, conn: AsyncConnection, task_id: uuid.UUID, tenant: str, approvals: Sequence[NewApproval], now: datetime
    ) -> None:
        rows = [
            {
                "id": uuid.uuid4(),
                "task_id": task_id,
                "tenant": tenant,
                "status": PENDING_APPROVAL,
                "requested_at": now,
                "step": a.step,
                "call_id": a.call_id,
                "tool": a.tool,
                "arguments": a.arguments,
                "reason": a.reason,
                "expires_at": a.expires_at,
            }
            for a in approvals
        ]
        if not rows:
            return
        stmt = self._insert(APPROVALS).values(rows)
        # A call asked again after its wait was cancelled and the task retried: the same row, asked anew.
        # A decided call is never asked again (the run answers it from the decision).
        asked_again = {name: stmt.excluded[name] for name in ("tool", "arguments", "reason", "requested_at")}
        stmt = stmt.on_conflict_do_update(
            index_elements=[APPROVALS.c.task_id, APPROVALS.c.step, APPROVALS.c.call_id],
            set_={**asked_again, "expires_at": stmt.excluded.expires_at},
            where=APPROVALS.c.status == PENDING_APPROVAL,
        )
        await conn.execute(stmt)

    async def decide(self, task_id: uuid.UUID, call_id: str, decision: Decision, *, tenant: TenantScope) -> Decided:
        """Record ``decision`` for the pending call ``call_id`` of a waiting task of ``tenant``."""
        now = utcnow()
        scope = _of_tenant(tenant)
        lock = (
            update(TASKS)
            .where(TASKS.c.id == task_id, TASKS.c.status == WAITING.value, *scope)
            .values(updated_at=now)
            .returning(TASKS.c.id)
        )
        async with database_errors(), self.engine.begin() as conn:
            if (await conn.execute(lock)).first() is None:
                await self._not_waiting(conn, task_id, scope)
            pending = (
                (
                    await conn.execute(
                        select(APPROVALS)
                        .where(
                            APPROVALS.c.task_id == task_id,
                            APPROVALS.c.call_id == call_id,
                            APPROVALS.c.status == PENDING_APPROVAL,
                        )
                        .order_by(APPROVALS.c.step.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
            if pending is None:
                await self._not_pending(conn, task_id, call_id)
            asked = Approval.from_row(pending)
            decided_row = (
                (
                    await conn.execute(
                        update(APPROVALS)
                        .where(APPROVALS.c.id == asked.id)
                        .values(
                            status=decision.status.value,
                            decided_at=now,
                            decided_by=decision.decided_by,
                            decision_reason=decision.reason,
                            edited_arguments=decision.arguments,
                        )
                        .returning(*APPROVALS.c)
                    )
                )
                .mappings()
                .one()
            )
            left = (
                await conn.execute(
                    select(func.count())
                    .select_from(APPROVALS)
                    .where(
                        APPROVALS.c.task_id == task_id,
                        APPROVALS.c.step == asked.step,
                        APPROVALS.c.status == PENDING_APPROVAL,
                    )
                )
            ).scalar_one()
            events = [_decided_event(asked, decision, now)]
            values: dict[str, Any] = {}
            if left == 0:
                events.append(status_event(RESUME))
                values = {"status": RESUME.to.value, "published_at": None, "run_after": None}
            task_row = (
                (
                    await conn.execute(
                        update(TASKS)
                        .where(TASKS.c.id == task_id)
                        .values(last_event_seq=TASKS.c.last_event_seq + len(events), **values)
                        .returning(*TASKS.c)
                    )
                )
                .mappings()
                .one()
            )
            task = Task.from_row(task_row)
            await add_events(conn, task_id, task.last_event_seq, task.attempts, events, now)
        return Decided(Approval.from_row(decided_row), task)

    async def pending(self, task_id: uuid.UUID, call_id: str, *, tenant: TenantScope) -> Approval:
        """The call ``call_id`` as it waits; the errors :meth:`decide` would raise if it does not."""
        scope = _of_tenant(tenant)
        async with self._read() as conn:
            status = (await conn.execute(select(TASKS.c.status).where(TASKS.c.id == task_id, *scope))).scalar()
            if status != WAITING.value:
                await self._not_waiting(conn, task_id, scope)
            row = (await conn.execute(_pending_call(task_id, call_id))).mappings().first()
            if row is None:
                await self._not_pending(conn, task_id, call_id)
        return Approval.from_row(row)

    async def _not_waiting(self, conn: AsyncConnection, task_id: uuid.UUID, scope: list[Any]) -> NoReturn:
        status = (await conn.execute(select(TASKS.c.status).where(TASKS.c.id == task_id, *scope))).scalar()
        if status is None:
            raise not_found(task_id)
        raise NotWaiting(f"task {task_id} is {status}, not waiting for an approval")

    async def _not_pending(self, conn: AsyncConnection, task_id: uuid.UUID, call_id: str) -> NoReturn:
        decided = (
            await conn.execute(
                select(APPROVALS.c.status)
                .where(APPROVALS.c.task_id == task_id, APPROVALS.c.call_id == call_id)
                .order_by(APPROVALS.c.step.desc())
                .limit(1)
            )
        ).scalar()
        if decided is None:
            raise ApprovalNotFound(f"task {task_id} has no tool call {call_id!r} waiting for approval")
        raise NotWaiting(f"tool call {call_id!r} of task {task_id} was already decided: {decided}")

    async def expire(self, now: datetime | None = None) -> builtins.list[Task]:
        """Deny, as timed out, the pending calls of waiting tasks past their expiry; the tasks this resumed."""
        now = now or utcnow()
        stmt = (
            select(APPROVALS.c.task_id, APPROVALS.c.call_id)
            .join(TASKS, TASKS.c.id == APPROVALS.c.task_id)
            .where(
                APPROVALS.c.status == PENDING_APPROVAL,
                APPROVALS.c.expires_at < now,
                TASKS.c.status == WAITING.value,
            )
            .order_by(APPROVALS.c.expires_at)
            .limit(EXPIRE_BATCH)
        )
        async with self._read() as conn:
            expired = (await conn.execute(stmt)).all()
        timed_out = Decision(status=ApprovalStatus.TIMED_OUT, decided_by="timeout", reason="timed out")
        resumed: builtins.list[Task] = []
        for task_id, call_id in expired:
            try:
                decided = await self.decide(task_id, call_id, timed_out, tenant=EVERY_TENANT)
            except (NotWaiting, ApprovalNotFound):
                continue  # decided, cancelled or expired by someone else meanwhile
            if decided.task.status is RESUME.to:
                resumed.append(decided.task)
        return resumed

    async def decisions(self, task_id: uuid.UUID, step: int) -> dict[str, Approval]:
        """The calls of ``step`` asked of a person, by call id, decided or not."""
        stmt = select(APPROVALS).where(APPROVALS.c.task_id == task_id, APPROVALS.c.step == step)
        async with self._read() as conn:
            return {row["call_id"]: Approval.from_row(row) for row in (await conn.execute(stmt)).mappings()}

    async def list(
        self,
        *,
        tenant: TenantScope,
        status: ApprovalStatus | None = None,
        task_id: uuid.UUID | None = None,
        limit: int = 100,
    ) -> builtins.list[Approval]:
        """Oldest request first. Pending means still answerable: its task is waiting (not cancelled)."""
        stmt = select(APPROVALS).join(TASKS, TASKS.c.id == APPROVALS.c.task_id).where(*_of_tenant(tenant))
        if status is not None:
            stmt = stmt.where(APPROVALS.c.status == status.value)
            if status is ApprovalStatus.PENDING:
                stmt = stmt.where(TASKS.c.status == WAITING.value)
        if task_id is not None:
            stmt = stmt.where(APPROVALS.c.task_id == task_id)
        order = (APPROVALS.c.requested_at, APPROVALS.c.task_id, APPROVALS.c.step, APPROVALS.c.call_id)
        stmt = stmt.order_by(*order).limit(limit)
        async with self._read() as conn:
            return [Approval.from_row(row) for row in (await conn.execute(stmt)).mappings()]

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return read_only(self.engine)


def _pending_call(task_id: uuid.UUID, call_id: str) -> Select[Any]:
    return (
        select(APPROVALS)
        .where(APPROVALS.c.task_id == task_id, APPROVALS.c.call_id == call_id, APPROVALS.c.status == PENDING_APPROVAL)
        .order_by(APPROVALS.c.step.desc())
        .limit(1)
    )


def _of_tenant(scope: TenantScope) -> builtins.list[Any]:
    tenant = tenant_or_none(scope)
    return [] if tenant is None else [TASKS.c.tenant == tenant]


def _decided_event(asked: Approval, decision: Decision, now: datetime) -> NewEvent:
    return NewEvent(
        EventType.APPROVAL_DECIDED.value,
        {
            "call_id": asked.call_id,
            "step": asked.step,
            "tool": asked.tool,
            "decision": decision.status.value,
            "reason": decision.reason,
            "decided_by": decision.decided_by,
            "decided_at": now.isoformat(),
            "arguments_edited": decision.arguments is not None,
        },
    )
