"""Workflows in the database: creating one, advancing it as its steps' tasks end, cancelling it, reading it.

Every change to a workflow happens in :meth:`WorkflowStore._advance`, in one
transaction that first takes the workflow's row (an UPDATE): so two workers
that finish two parents of one step at the same moment advance the workflow
one after the other, and the second sees the step already started. A step
starts by a conditional UPDATE of its row (``blocked`` → ``started``, setting
``task_id``) in the transaction that inserts its task, so its task is
created once, whoever asks and however often.

What ends a step's task is not hooked: the worker that ran it advances its
workflow right after (the fast path), and the sweep (:meth:`due`, run by
every worker) finds every started step whose task has ended but whose step
has not settled, whatever ended it (a reaper, a cancel, a crash between the
two). A task outside a workflow pays nothing.

**Completion webhooks.** A workflow with a ``callback_url`` gets one
delivery in the webhook outbox (:meth:`WebhookStore.enqueue
<ops_core.db.webhooks.WebhookStore.enqueue>`, subject ``workflow``, round 0)
written by :meth:`WorkflowStore._advance` in the transaction that makes the
workflow *final*: ended (completed, failed, cancelled) with no step still
``started``. That is the transaction that ends it when nothing runs any more,
else the one that settles its last step (a step still running when the
workflow failed or was cancelled is cancelled first), so the body, the
record ``GET /v1/workflows/{id}`` answers, shows every step's end. Being in
that transaction, the delivery exists if and only if the workflow is final:
a crash before the commit leaves the workflow to the sweep, which finishes
the advance and enqueues it then. The outbox's unique key on (subject,
round) makes a second enqueue a no-op, so it is sent once per workflow.

Workflows are few next to tasks, so one Core statement set serves both
backends, as ``approvals.py`` does.
"""

from __future__ import annotations

import base64
import builtins
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ops_core.db.engine import database_errors, read_only
from ops_core.db.event_rows import add_events
from ops_core.db.models import TASKS, WORKFLOW_STEPS, WORKFLOWS, NewTask, Task
from ops_core.db.rules import created_event, utcnow
from ops_core.db.store import decode_cursor, new_task_row
from ops_core.db.webhooks import WORKFLOW_SUBJECT, WebhookStore
from ops_core.errors import WorkflowFinished, WorkflowNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import TenantScope, tenant_or_none
from ops_core.workflow_lifecycle import (
    Plan,
    StepState,
    StepStatus,
    WorkflowStatus,
    plan,
    step_sources,
    workflow_sources,
)
from ops_core.workflow_spec import StepOutcome, render

# The sweep advances this many workflows per pass; the rest wait for the next pass.
SWEEP_BATCH = 200
# The task fields a step's spec holds (the rest of a NewTask comes from the workflow and its parents).
TASK_FIELDS = (
    "agent",
    "goal",
    "input",
    "model",
    "max_retries",
    "timeout_seconds",
    "priority",
    "schedule_to_start_seconds",
    "concurrency_key",
    "concurrency_limit",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewStep:
    """A step as submitted and resolved: its task's fields (``task.goal`` is the template), and its edges."""

    name: str
    task: Mapping[str, Any]
    depends_on: Sequence[str] = ()
    continue_on_failure: bool = False

    def spec(self) -> dict[str, Any]:
        return {
            "task": {name: self.task[name] for name in TASK_FIELDS},
            "depends_on": list(self.depends_on),
            "continue_on_failure": self.continue_on_failure,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NewWorkflow:
    tenant: str
    steps: Sequence[NewStep]
    # The request as submitted: a repeated idempotency key must come with the same one.
    request: dict[str, Any]
    idempotency_key: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Workflow:
    """A row of the ``workflows`` table."""

    id: uuid.UUID
    tenant: str
    status: WorkflowStatus
    request: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    reason: str | None = None
    finished_at: datetime | None = None
    callback_url: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Workflow:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["status"] = WorkflowStatus(values["status"])
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A step with where its task stands (``task_*`` None before it started)."""

    name: str
    position: int
    status: StepStatus
    agent: str
    depends_on: list[str]
    continue_on_failure: bool
    task_id: uuid.UUID | None
    started_at: datetime | None
    finished_at: datetime | None
    task_status: TaskStatus | None = None
    task_cancel_requested: bool = False
    task_result: Any = None
    task_error: str | None = None

    def state(self) -> StepState:
        return StepState(
            name=self.name,
            status=self.status,
            depends_on=self.depends_on,
            continue_on_failure=self.continue_on_failure,
            task_id=self.task_id,
            task_status=self.task_status,
            task_cancel_requested=self.task_cancel_requested,
            task_error=self.task_error,
        )

    def outcome(self) -> StepOutcome:
        status = self.task_status.value if self.task_status is not None else self.status.value
        return StepOutcome(status=status, result=self.task_result, error=self.task_error)


@dataclass(frozen=True, slots=True)
class WorkflowView:
    workflow: Workflow
    steps: list[Step]


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    items: list[Workflow]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Advanced:
    """What one advance did: the workflow as left, the tasks it created (to publish), and the tasks of
    steps to cancel (the workflow ended while they ran)."""

    view: WorkflowView
    started: list[Task] = field(default_factory=list)
    cancel: list[uuid.UUID] = field(default_factory=list)
    created: bool = True


@dataclass(frozen=True, slots=True)
class EndWebhooks:
    """Where a workflow's end goes: the webhook outbox, and the body it sends (``render``: the record
    ``GET /v1/workflows/{id}`` answers, made by the API's schema, which this layer does not import)."""

    outbox: WebhookStore
    render: Callable[[WorkflowView], str]


class _Raced(Exception):
    """A step was started by someone else in between: roll back (the workflow row lock makes this a bug)."""


class WorkflowStore:
    def __init__(self, engine: AsyncEngine, *, webhooks: EndWebhooks | None = None) -> None:
        self.engine = engine
        self._webhooks = webhooks
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # ---- writes -----------------------------------------------------------------------------------

    async def create(self, new: NewWorkflow) -> Advanced:
        """Insert the workflow and its steps and start its roots, in one transaction.

        With a known idempotency key nothing is written; the existing workflow comes back with ``created`` False.
        """
        if new.callback_url is not None and self._webhooks is None:
            raise ValueError("this WorkflowStore was built without webhooks: it cannot take a callback_url")
        now = utcnow()
        workflow_id = uuid.uuid4()
        stmt = (
            self._insert(WORKFLOWS)
            .values(
                id=workflow_id,
                tenant=new.tenant,
                status=WorkflowStatus.RUNNING.value,
                idempotency_key=new.idempotency_key,
                request=new.request,
                callback_url=new.callback_url,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[WORKFLOWS.c.tenant, WORKFLOWS.c.idempotency_key])
            .returning(WORKFLOWS.c.id)
        )
        async with database_errors(), self.engine.begin() as conn:
            if (await conn.execute(stmt)).first() is None:
                existing = await conn.scalar(
                    select(WORKFLOWS.c.id).where(
                        WORKFLOWS.c.tenant == new.tenant, WORKFLOWS.c.idempotency_key == new.idempotency_key
                    )
                )
                assert existing is not None, "only an idempotency conflict leaves a workflow uninserted"
                return Advanced(await self._view(conn, existing, new.tenant), created=False)
            await conn.execute(
                WORKFLOW_STEPS.insert(),
                [
                    {
                        "workflow_id": workflow_id,
                        "name": step.name,
                        "position": position,
                        "spec": step.spec(),
                        "status": StepStatus.BLOCKED.value,
                    }
                    for position, step in enumerate(new.steps)
                ],
            )
            return await self._advance(conn, workflow_id, now)

    async def advance(self, workflow_id: uuid.UUID) -> Advanced:
        """Settle the steps whose task ended, start the steps whose parents are done, end the workflow
        when it is done or broken; a no-op when nothing changed."""
        async with database_errors(), self.engine.begin() as conn:
            return await self._advance(conn, workflow_id, utcnow())

    async def cancel(self, workflow_id: uuid.UUID, *, tenant: TenantScope) -> Advanced:
        """running → cancelled: steps not started are skipped; the tasks of started ones come back to cancel."""
        now = utcnow()
        scope = _of_tenant(tenant)
        stmt = (
            update(WORKFLOWS)
            .where(
                WORKFLOWS.c.id == workflow_id,
                WORKFLOWS.c.status.in_([s.value for s in workflow_sources(WorkflowStatus.CANCELLED)]),
                *scope,
            )
            .values(
                status=WorkflowStatus.CANCELLED.value, reason="cancelled on request", finished_at=now, updated_at=now
            )
            .returning(WORKFLOWS.c.id)
        )
        async with database_errors(), self.engine.begin() as conn:
            if (await conn.execute(stmt)).first() is None:
                found = await conn.scalar(select(WORKFLOWS.c.status).where(WORKFLOWS.c.id == workflow_id, *scope))
                if found is None:
                    raise _not_found(workflow_id)
                raise WorkflowFinished(f"workflow {workflow_id} is already {found}")
            return await self._advance(conn, workflow_id, now, ended=True)

    async def _advance(
        self, conn: AsyncConnection, workflow_id: uuid.UUID, now: datetime, *, ended: bool = False
    ) -> Advanced:
        """``ended``: the caller just moved the workflow to a terminal status in this transaction."""
        # Takes the workflow's row: concurrent advances of one workflow run one after the other. It writes
        # nothing (updated_at moves only when something changes), so an advance that finds nothing to do
        # leaves the record as it was, e.g. the one its webhook sent.
        lock = (
            update(WORKFLOWS)
            .where(WORKFLOWS.c.id == workflow_id)
            .values(updated_at=WORKFLOWS.c.updated_at)
            .returning(*WORKFLOWS.c)
        )
        row = (await conn.execute(lock)).mappings().first()
        if row is None:
            raise _not_found(workflow_id)
        workflow = Workflow.from_row(row)
        steps = await self._steps(conn, workflow_id)
        decided = plan(workflow.status, [step.state() for step in steps])
        started: list[Task] = []
        if decided.changes_anything:
            await self._apply(conn, workflow, steps, decided, started, now)
            steps = await self._steps(conn, workflow_id)
            row = (await conn.execute(select(WORKFLOWS).where(WORKFLOWS.c.id == workflow_id))).mappings().one()
            workflow = Workflow.from_row(row)
        view = WorkflowView(workflow, steps)
        if (ended or decided.changes_anything) and _final(view):
            await self._enqueue_end(conn, view)
        return Advanced(view, started=started, cancel=decided.cancel)

    async def _enqueue_end(self, conn: AsyncConnection, view: WorkflowView) -> None:
        """The workflow's webhook, in the transaction that made it final (see the module docstring)."""
        workflow = view.workflow
        if workflow.callback_url is None:
            return
        if self._webhooks is None:
            raise RuntimeError(f"workflow {workflow.id} has a callback_url but this store has no webhook outbox")
        await self._webhooks.outbox.enqueue(
            tenant=workflow.tenant,
            subject_type=WORKFLOW_SUBJECT,
            subject_id=str(workflow.id),
            round=0,  # a workflow ends once: nothing brings an ended workflow back
            event_type=f"workflow.{workflow.status.value}",
            url=workflow.callback_url,
            payload=self._webhooks.render(view),
            conn=conn,
        )

    async def _apply(
        self,
        conn: AsyncConnection,
        workflow: Workflow,
        steps: Sequence[Step],
        decided: Plan,
        started: list[Task],
        now: datetime,
    ) -> None:
        await conn.execute(update(WORKFLOWS).where(WORKFLOWS.c.id == workflow.id).values(updated_at=now))
        for name, status in decided.settle.items():
            await self._move_step(conn, workflow.id, name, status, finished_at=now)
        for name in decided.skip:
            await self._move_step(conn, workflow.id, name, StepStatus.SKIPPED, finished_at=now)
        if decided.start:
            outcomes = {step.name: step.outcome() for step in steps if step.task_id is not None}
            rows = await conn.execute(
                select(WORKFLOW_STEPS.c.name, WORKFLOW_STEPS.c.spec).where(
                    WORKFLOW_STEPS.c.workflow_id == workflow.id, WORKFLOW_STEPS.c.name.in_(decided.start)
                )
            )
            specs: dict[str, Any] = {row.name: row.spec for row in rows}
            for name in decided.start:
                started.append(await self._start(conn, workflow, name, specs[name], outcomes, now))
        if decided.status is not None:
            moved = await conn.execute(
                update(WORKFLOWS)
                .where(
                    WORKFLOWS.c.id == workflow.id,
                    WORKFLOWS.c.status.in_([s.value for s in workflow_sources(decided.status)]),
                )
                .values(status=decided.status.value, reason=decided.reason, finished_at=now, updated_at=now)
            )
            if moved.rowcount != 1:
                raise _Raced(f"workflow {workflow.id} moved on while it was being advanced")

    async def _move_step(
        self, conn: AsyncConnection, workflow_id: uuid.UUID, name: str, status: StepStatus, *, finished_at: datetime
    ) -> None:
        await conn.execute(
            update(WORKFLOW_STEPS)
            .where(
                WORKFLOW_STEPS.c.workflow_id == workflow_id,
                WORKFLOW_STEPS.c.name == name,
                WORKFLOW_STEPS.c.status.in_([s.value for s in step_sources(status)]),
            )
            .values(status=status.value, finished_at=finished_at)
        )

    async def _start(
        self,
        conn: AsyncConnection,
        workflow: Workflow,
        name: str,
        spec: Mapping[str, Any],
        outcomes: Mapping[str, StepOutcome],
        now: datetime,
    ) -> Task:
        """Create the step's task, with its goal rendered from its parents' results; blocked → started."""
        fields_ = dict(spec["task"])
        fields_["goal"] = render(name, fields_["goal"], outcomes)
        task = new_task_row(NewTask(tenant=workflow.tenant, workflow_id=workflow.id, **fields_), now)
        await conn.execute(TASKS.insert().values({c.name: getattr(task, c.name) for c in TASKS.c}))
        await add_events(conn, task.id, task.last_event_seq, 0, [created_event()], now)
        moved = await conn.execute(
            update(WORKFLOW_STEPS)
            .where(
                WORKFLOW_STEPS.c.workflow_id == workflow.id,
                WORKFLOW_STEPS.c.name == name,
                WORKFLOW_STEPS.c.status.in_([s.value for s in step_sources(StepStatus.STARTED)]),
                WORKFLOW_STEPS.c.task_id.is_(None),
            )
            .values(status=StepStatus.STARTED.value, task_id=task.id, started_at=now)
        )
        if moved.rowcount != 1:
            raise _Raced(f"workflow {workflow.id}: step {name!r} was started twice")
        return task

    # ---- reads ------------------------------------------------------------------------------------

    async def get(self, workflow_id: uuid.UUID, *, tenant: TenantScope) -> WorkflowView:
        async with self._read() as conn:
            return await self._view(conn, workflow_id, tenant)

    async def list(
        self,
        *,
        tenant: TenantScope,
        status: WorkflowStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkflowPage:
        """Newest first, keyset-paginated on (created_at, id), like the tasks' listing."""
        stmt = select(WORKFLOWS).where(*_of_tenant(tenant))
        if status is not None:
            stmt = stmt.where(WORKFLOWS.c.status == status.value)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            stmt = stmt.where(tuple_(WORKFLOWS.c.created_at, WORKFLOWS.c.id) < tuple_(created_at, last_id))
        stmt = stmt.order_by(WORKFLOWS.c.created_at.desc(), WORKFLOWS.c.id.desc()).limit(limit + 1)
        async with self._read() as conn:
            rows = [Workflow.from_row(row) for row in (await conn.execute(stmt)).mappings()]
        items = rows[:limit]
        more = len(rows) > limit and items
        return WorkflowPage(items, _cursor(items[-1]) if more else None)

    async def due(self, *, limit: int = SWEEP_BATCH) -> builtins.list[uuid.UUID]:
        """Workflows with a started step whose task ended (to settle), or, once the workflow ended, whose
        task still runs with no cancel asked (to cancel): what a crash or another path left undone."""
        stmt = (
            select(WORKFLOW_STEPS.c.workflow_id)
            .join(TASKS, TASKS.c.id == WORKFLOW_STEPS.c.task_id)
            .join(WORKFLOWS, WORKFLOWS.c.id == WORKFLOW_STEPS.c.workflow_id)
            .where(
                WORKFLOW_STEPS.c.status == StepStatus.STARTED.value,
                TASKS.c.finished_at.is_not(None)
                | and_(
                    WORKFLOWS.c.status != WorkflowStatus.RUNNING.value,
                    TASKS.c.cancel_requested.is_(False),
                ),
            )
            .distinct()
            .limit(limit)
        )
        async with self._read() as conn:
            return list((await conn.execute(stmt)).scalars())

    async def _view(self, conn: AsyncConnection, workflow_id: uuid.UUID, tenant: TenantScope) -> WorkflowView:
        stmt = select(WORKFLOWS).where(WORKFLOWS.c.id == workflow_id, *_of_tenant(tenant))
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise _not_found(workflow_id)
        return WorkflowView(Workflow.from_row(row), await self._steps(conn, workflow_id))

    async def _steps(self, conn: AsyncConnection, workflow_id: uuid.UUID) -> builtins.list[Step]:
        stmt = (
            select(
                WORKFLOW_STEPS,
                TASKS.c.status.label("task_status"),
                TASKS.c.cancel_requested.label("task_cancel_requested"),
                TASKS.c.result.label("task_result"),
                TASKS.c.error_message.label("task_error"),
            )
            .outerjoin(TASKS, TASKS.c.id == WORKFLOW_STEPS.c.task_id)
            .where(WORKFLOW_STEPS.c.workflow_id == workflow_id)
            .order_by(WORKFLOW_STEPS.c.position)
        )
        steps = []
        for row in (await conn.execute(stmt)).mappings():
            spec = row["spec"]
            steps.append(
                Step(
                    name=row["name"],
                    position=row["position"],
                    status=StepStatus(row["status"]),
                    agent=spec["task"]["agent"],
                    depends_on=list(spec["depends_on"]),
                    continue_on_failure=bool(spec["continue_on_failure"]),
                    task_id=row["task_id"],
                    started_at=row["started_at"],
                    finished_at=row["finished_at"],
                    task_status=None if row["task_status"] is None else TaskStatus(row["task_status"]),
                    task_cancel_requested=bool(row["task_cancel_requested"]),
                    task_result=row["task_result"],
                    task_error=row["task_error"],
                )
            )
        return steps

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return read_only(self.engine)


def _final(view: WorkflowView) -> bool:
    """Ended, and no step still waits for its task to end: the record will not change any more."""
    return view.workflow.status.is_terminal and all(step.status is not StepStatus.STARTED for step in view.steps)


def _of_tenant(scope: TenantScope) -> builtins.list[Any]:
    tenant = tenant_or_none(scope)
    return [] if tenant is None else [WORKFLOWS.c.tenant == tenant]


def _cursor(workflow: Workflow) -> str:
    # The tasks' cursor format (store.decode_cursor reads both).
    raw = json.dumps([workflow.created_at.isoformat(), workflow.id.hex]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _not_found(workflow_id: uuid.UUID) -> WorkflowNotFound:
    return WorkflowNotFound(f"workflow {workflow_id} not found")
