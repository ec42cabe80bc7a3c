"""The tables (SQLModel, named like fastapi's full-stack template) and the store's record types.

The Alembic migrations create these tables; nothing calls ``create_all``. The
drift test proves the two agree, so a change here needs a new revision.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from ops_core.db.types import JSONType, UTCDateTime
from ops_core.lifecycle import TaskStatus

# Alembic autogenerate and the migration agree on constraint names only with a convention.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Pending, running or waiting: every terminal transition sets finished_at, and a manual retry clears it.
ACTIVE_WHERE = "finished_at IS NULL"
KEYED_WHERE = "finished_at IS NULL AND concurrency_key IS NOT NULL"
IN_SESSION_WHERE = "session_id IS NOT NULL"
# Finished tasks whose completion webhook is not yet in the outbox (db/webhooks.py): empty at rest.
WEBHOOK_DUE_WHERE = (
    "callback_url IS NOT NULL AND finished_at IS NOT NULL"
    " AND (webhook_round IS NULL OR webhook_round <> manual_retries)"
)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json(*, nullable: bool) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


class TaskTable(SQLModel, table=True):
    """The ``tasks`` table: one agent run, from submission to its terminal status.

    ``attempts`` counts claims (a lost or failed attempt counts; a graceful
    hand-back does not) and doubles as the fencing token: every worker-owned
    write checks ``attempts = <the attempt it claimed>``. ``max_retries`` is
    the retry limit *including* budgets granted by manual retries (no retries
    left once ``attempts > max_retries``); ``retry_base`` records how many
    attempts had been used when the last manual retry was granted, so the
    configured value is ``max_retries - retry_base``.

    The store hands out rows as :class:`Task` records, not instances of this
    class: building a SQLModel table instance costs several times what a
    slotted dataclass does, and a worker builds one for every claim
    (docs/benchmarks.md, Findings).
    """

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_created_at_id", text("created_at DESC"), text("id DESC")),
        # A tenant's list, newest first (the one above serves an admin's, across tenants).
        Index("ix_tasks_tenant_created_at_id", "tenant", text("created_at DESC"), text("id DESC")),
        # Idempotency keys are per tenant: two tenants may use the same key.
        UniqueConstraint("tenant", "idempotency_key", name="uq_tasks_tenant_idempotency_key"),
        # The relay and recovery scan unfinished tasks on every tick. No index mentions status or any
        # other column a claim changes, so claims are HOT updates (see migration 0002).
        Index(
            "ix_tasks_active",
            "created_at",
            "id",
            postgresql_where=text(ACTIVE_WHERE),
            sqlite_where=text(ACTIVE_WHERE),
        ),
        # Counts a concurrency key's unfinished tasks (rules.py, slots); see migration 0005.
        Index(
            "ix_tasks_concurrency_key",
            "tenant",
            "concurrency_key",
            "created_at",
            "id",
            postgresql_where=text(KEYED_WHERE),
            sqlite_where=text(KEYED_WHERE),
        ),
        # A session's turns: its tasks in submission order (db/sessions.py); see migration 0009.
        Index(
            "ix_tasks_session_id",
            "session_id",
            "created_at",
            "id",
            postgresql_where=text(IN_SESSION_WHERE),
            sqlite_where=text(IN_SESSION_WHERE),
        ),
        # The webhook sweep's queue (db/webhooks.py); see migration 0011.
        Index(
            "ix_tasks_webhook_due",
            "finished_at",
            postgresql_where=text(WEBHOOK_DUE_WHERE),
            sqlite_where=text(WEBHOOK_DUE_WHERE),
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(SAUuid(), primary_key=True))
    tenant: str = Field(sa_column=Column(String(100), nullable=False))
    agent: str = Field(sa_column=Column(String(200), nullable=False))
    goal: str = Field(sa_column=Column(Text(), nullable=False))
    input: dict[str, Any] = _json(nullable=False)
    model: str = Field(sa_column=Column(String(200), nullable=False))
    # Deliberately in no index: see ix_tasks_active.
    status: TaskStatus = Field(sa_column=Column(String(20), nullable=False))
    result: Any = _json(nullable=True)
    error_type: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    error_message: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    attempts: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    max_retries: int = Field(sa_column=Column(Integer(), nullable=False))
    retry_base: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    timeout_seconds: int = Field(sa_column=Column(Integer(), nullable=False))
    schedule_to_start_seconds: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    # created_at + schedule_to_start_seconds, precomputed so claim() compares plain timestamps.
    start_deadline: datetime | None = _ts()
    priority: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    input_tokens: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    output_tokens: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    reused_tokens: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    attempt_errors: list[dict[str, Any]] = _json(nullable=False)
    checkpoint: dict[str, Any] | None = _json(nullable=True)
    cancel_requested: bool = Field(default=False, sa_column=Column(Boolean(), nullable=False))
    # How often an operator sent it back to pending; bounded by OPSCORE_MAX_MANUAL_RETRIES.
    manual_retries: int = Field(default=0, sa_column=Column(Integer(), nullable=False, server_default=text("0")))
    published_at: datetime | None = _ts()
    run_after: datetime | None = _ts()
    # At most concurrency_limit tasks of the tenant with this key run at once (rules.py, slots).
    concurrency_key: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    concurrency_limit: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    # The session whose turn this task is (db/sessions.py); its tasks share an internal concurrency key.
    session_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(SAUuid(), ForeignKey("sessions.id"), nullable=True)
    )
    # Where the final record is POSTed when the task ends (db/webhooks.py); webhook_round is the
    # manual_retries of the last terminal state whose delivery is in the outbox.
    callback_url: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    webhook_round: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    last_event_seq: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    worker_id: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
    started_at: datetime | None = _ts()
    # When the current attempt was claimed (started_at is the first attempt's start).
    claimed_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    # The workflow this task is a step of (db/workflows.py); None for a task submitted on its own.
    workflow_id: uuid.UUID | None = Field(default=None, sa_column=Column(SAUuid(), nullable=True))


class SessionTable(SQLModel, table=True):
    """A conversation: its turns are the tasks that name it, in submission order (db/sessions.py).

    ``status`` is open or closed; a closed session takes no new tasks.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_tenant_created_at_id", "tenant", text("created_at DESC"), text("id DESC")),
        Index("ix_sessions_created_at_id", text("created_at DESC"), text("id DESC")),
    )

    id: uuid.UUID = Field(sa_column=Column(SAUuid(), primary_key=True))
    tenant: str = Field(sa_column=Column(String(100), nullable=False))
    agent: str = Field(sa_column=Column(String(200), nullable=False))
    # "metadata" is reserved on SQLModel/SQLAlchemy classes, hence the attribute name.
    meta: dict[str, Any] = Field(default=None, sa_column=Column("metadata", JSONType, nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
    closed_at: datetime | None = _ts()


class TaskEventTable(SQLModel, table=True):
    __tablename__ = "task_events"
    __table_args__ = (UniqueConstraint("task_id", "seq", name="uq_task_events_task_id_seq"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    )
    task_id: uuid.UUID = Field(sa_column=Column(SAUuid(), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False))
    seq: int = Field(sa_column=Column(Integer(), nullable=False))
    attempt: int = Field(sa_column=Column(Integer(), nullable=False))
    type: str = Field(sa_column=Column(String(100), nullable=False))
    payload: dict[str, Any] = _json(nullable=False)
    created_at: datetime = _ts(nullable=False)


class TenantTable(SQLModel, table=True):
    """A tenant and the quotas an admin set for it; a tenant with no row has no quotas.

    A row appears when the first key is created for the tenant or an admin sets a quota.
    ``tat`` is the rate limiter's theoretical arrival time (GCRA): the next
    submission is allowed once ``tat - burst`` has passed.
    """

    __tablename__ = "tenants"

    id: str = Field(sa_column=Column(String(100), primary_key=True))
    max_running: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    submissions_per_second: float | None = Field(default=None, sa_column=Column(Float(), nullable=True))
    daily_token_budget: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    # Comma-separated patterns, as OPSCORE_ALLOWED_MODELS; None: the deployment's allow-list.
    allowed_models: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    tat: datetime | None = _ts()
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class ApiKeyTable(SQLModel, table=True):
    """An API key: only the SHA-256 of its secret is stored; the secret is shown once, at creation."""

    __tablename__ = "api_keys"

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    tenant: str = Field(sa_column=Column(String(100), nullable=False, index=True))
    name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    scopes: list[str] = _json(nullable=False)
    secret_hash: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()


class ApprovalTable(SQLModel, table=True):
    """A tool call that waits for a person's decision: one row per call, per step of a waiting task.

    ``status`` is pending until decided: approved, denied, or timed_out once
    ``expires_at`` passes. ``edited_arguments`` replace the model's arguments
    when an approver changed them.
    """

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("task_id", "step", "call_id", name="uq_approvals_task_id"),
        Index("ix_approvals_tenant_requested_at", "tenant", "requested_at"),
        Index(
            "ix_approvals_expires_at",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(SAUuid(), primary_key=True))
    task_id: uuid.UUID = Field(sa_column=Column(SAUuid(), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False))
    tenant: str = Field(sa_column=Column(String(100), nullable=False))
    step: int = Field(sa_column=Column(Integer(), nullable=False))
    call_id: str = Field(sa_column=Column(String(200), nullable=False))
    tool: str = Field(sa_column=Column(String(200), nullable=False))
    arguments: dict[str, Any] = _json(nullable=False)
    reason: str = Field(sa_column=Column(Text(), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    requested_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    decided_at: datetime | None = _ts()
    decided_by: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    decision_reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    edited_arguments: dict[str, Any] | None = _json(nullable=True)


class RateLimitTable(SQLModel, table=True):
    """The shared state of one provider rate limit (``OPSCORE_RATE_LIMITS``), keyed by provider or provider:model.

    Every worker draws from it (``db/ratelimits.py``). The three times are seconds since
    the epoch on the database's clock: the GCRA's theoretical arrival times of the
    request and token buckets (``agentkit.models.gcra``), and the end of the hold a
    provider's 429 put on the limit.
    """

    __tablename__ = "rate_limits"

    key: str = Field(sa_column=Column(String(300), primary_key=True))
    request_tat: float = Field(sa_column=Column(Float(), nullable=False))
    token_tat: float = Field(sa_column=Column(Float(), nullable=False))
    blocked_until: float = Field(sa_column=Column(Float(), nullable=False))
    updated_at: datetime = _ts(nullable=False)


class WebhookSecretTable(SQLModel, table=True):
    """A tenant's webhook signing secret (Standard Webhooks ``whsec_…``), made on first use.

    After a rotation the previous secret still signs, next to the new one, until ``previous_until``.
    """

    __tablename__ = "webhook_secrets"

    tenant: str = Field(sa_column=Column(String(100), primary_key=True))
    secret: str = Field(sa_column=Column(String(200), nullable=False))
    previous_secret: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    previous_until: datetime | None = _ts()
    created_at: datetime = _ts(nullable=False)
    rotated_at: datetime | None = _ts()


class WebhookDeliveryTable(SQLModel, table=True):
    """The webhook outbox: one message to POST (its id is the ``webhook-id``), retried until delivered
    or ``expires_at``. ``(subject_type, subject_id, round)`` names the end it reports: one row per end."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subject_type", "subject_id", "round", name="uq_webhook_deliveries_subject"),
        Index("ix_webhook_deliveries_tenant_created_at", "tenant", "created_at"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(SAUuid(), primary_key=True))
    tenant: str = Field(sa_column=Column(String(100), nullable=False))
    subject_type: str = Field(sa_column=Column(String(50), nullable=False))
    subject_id: str = Field(sa_column=Column(String(100), nullable=False))
    round: int = Field(sa_column=Column(Integer(), nullable=False))
    event_type: str = Field(sa_column=Column(String(100), nullable=False))
    url: str = Field(sa_column=Column(Text(), nullable=False))
    # The exact body every attempt sends (JSON text), so a duplicate is byte for byte the same.
    payload: str = Field(sa_column=Column(Text(), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    next_attempt_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    created_at: datetime = _ts(nullable=False)
    delivered_at: datetime | None = _ts()
    last_status_code: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


class WebhookAttemptTable(SQLModel, table=True):
    """One POST of a delivery: when, how long, and the receiver's status code or the error."""

    __tablename__ = "webhook_attempts"

    delivery_id: uuid.UUID = Field(
        sa_column=Column(SAUuid(), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), primary_key=True)
    )
    attempt: int = Field(sa_column=Column(Integer(), primary_key=True))
    started_at: datetime = _ts(nullable=False)
    duration_ms: float = Field(sa_column=Column(Float(), nullable=False))
    status_code: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


ACTIVE_SCHEDULE_WHERE = "state = 'active'"


class ScheduleTable(SQLModel, table=True):
    """A cron schedule of a tenant: what to submit (``template``) at each tick of ``cron`` in ``timezone``.

    ``next_run_at`` is the first tick not yet handled. A ticker fires it by moving
    ``next_run_at`` on with a conditional UPDATE (``WHERE next_run_at = <as read>``)
    in the transaction that creates the tick's task, so each tick fires once
    (``db/schedules.py``). Paused schedules keep their row and are not due.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_tenant_created_at_id", "tenant", text("created_at DESC"), text("id DESC")),
        # What every ticker pass reads: the active schedules that are due.
        Index(
            "ix_schedules_next_run_at",
            "next_run_at",
            postgresql_where=text(ACTIVE_SCHEDULE_WHERE),
            sqlite_where=text(ACTIVE_SCHEDULE_WHERE),
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(SAUuid(), primary_key=True))
    tenant: str = Field(sa_column=Column(String(100), nullable=False))
    name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    cron: str = Field(sa_column=Column(String(200), nullable=False))
    timezone: str = Field(sa_column=Column(String(100), nullable=False))
    catch_up: str = Field(sa_column=Column(String(20), nullable=False))
    # {"kind": "task", ...}: the kind names what each tick creates.
    template: dict[str, Any] = _json(nullable=False)
    state: str = Field(sa_column=Column(String(20), nullable=False))
    next_run_at: datetime = _ts(nullable=False)
    last_tick_at: datetime | None = _ts()
    last_task_id: uuid.UUID | None = Field(default=None, sa_column=Column(SAUuid(), nullable=True))
    last_workflow_id: uuid.UUID | None = Field(default=None, sa_column=Column(SAUuid(), nullable=True))
    fired: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    skipped: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class SchedulePendingTickTable(SQLModel, table=True):
    """A workflow schedule's tick that fired but whose workflow is not yet confirmed started.

    Written in the fire's transaction, deleted once the workflow (idempotency key
    ``schedule:<id>:<tick>``) exists: what a ticker crash in between leaves here,
    the next ticker pass starts (``db/schedules.py``).
    """

    __tablename__ = "schedule_pending_ticks"

    schedule_id: uuid.UUID = Field(sa_column=Column(SAUuid(), primary_key=True))
    tick: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    created_at: datetime = _ts(nullable=False)


class WorkflowTable(SQLModel, table=True):
    """A workflow: a DAG of steps, each run as a task (``db/workflows.py``).

    ``request`` is the request as submitted, which a repeated idempotency key must match.
    """

    __tablename__ = "workflows"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_workflows_tenant_idempotency_key"),
        Index("ix_workflows_tenant_created_at_id", "tenant", text("created_at DESC"), text("id DESC")),
    )

    id: uuid.UUID = Field(sa_column=Column(SAUuid(), primary_key=True))
    tenant: str = Field(sa_column=Column(String(100), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    request: dict[str, Any] = _json(nullable=False)
    reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts()
    # Where the workflow's final record is POSTed when it ends (completion webhooks, db/workflows.py).
    callback_url: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


class WorkflowStepTable(SQLModel, table=True):
    """One step of a workflow: blocked until its parents are done, then started as exactly one task."""

    __tablename__ = "workflow_steps"
    __table_args__ = (
        UniqueConstraint("task_id", name="uq_workflow_steps_task_id"),
        # The sweep's scan: steps started whose task may have ended (rows leave it once settled).
        Index(
            "ix_workflow_steps_started",
            "task_id",
            postgresql_where=text("status = 'started'"),
            sqlite_where=text("status = 'started'"),
        ),
    )

    workflow_id: uuid.UUID = Field(
        sa_column=Column(SAUuid(), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    )
    name: str = Field(sa_column=Column(String(100), primary_key=True))
    position: int = Field(sa_column=Column(Integer(), nullable=False))
    spec: dict[str, Any] = _json(nullable=False)
    status: str = Field(sa_column=Column(String(20), nullable=False))
    task_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(SAUuid(), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=True)
    )
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class RemoteAgentTable(SQLModel, table=True):
    """An agent that runs outside ops-core behind an HTTP endpoint, registered by a tenant's admin.

    ``secret`` is the Standard Webhooks shared secret (``whsec_…``): kept as given, because
    signing needs it in clear (no encryption key setting exists; see ``db/remote.py``).
    """

    __tablename__ = "remote_agents"

    tenant: str = Field(sa_column=Column(String(100), primary_key=True))
    name: str = Field(sa_column=Column(String(100), primary_key=True))
    url: str = Field(sa_column=Column(Text(), nullable=False))
    secret: str = Field(sa_column=Column(Text(), nullable=False))
    description: str = Field(sa_column=Column(Text(), nullable=False))
    model: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    created_at: datetime = _ts(nullable=False)


class RemoteRunTable(SQLModel, table=True):
    """An attempt of a task handed to a remote agent: the worker slot is free, this row holds its lease.

    ``lease_until`` moves forward with every signed callback; ``cancel_sent_at`` is set by the one
    worker that sends the cancel webhook.
    """

    __tablename__ = "remote_runs"

    task_id: uuid.UUID = Field(sa_column=Column(SAUuid(), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True))
    attempt: int = Field(sa_column=Column(Integer(), nullable=False))
    delivered_at: datetime = _ts(nullable=False)
    lease_until: datetime = _ts(nullable=False)
    cancel_sent_at: datetime | None = _ts()


class RemoteCallbackTable(SQLModel, table=True):
    """The ``webhook-id`` of each callback accepted, kept past the timestamp tolerance: a replay is refused."""

    __tablename__ = "remote_callbacks"

    msg_id: str = Field(sa_column=Column(String(200), primary_key=True))
    received_at: datetime = _ts(nullable=False, index=True)


class Worker(SQLModel, table=True):
    __tablename__ = "workers"

    id: str = Field(sa_column=Column(String(200), primary_key=True))
    host: str = Field(sa_column=Column(String(255), nullable=False))
    pid: int = Field(sa_column=Column(Integer(), nullable=False))
    concurrency: int = Field(sa_column=Column(Integer(), nullable=False))
    started_at: datetime = _ts(nullable=False)
    last_heartbeat: datetime = _ts(nullable=False, index=True)
    stopped_at: datetime | None = _ts()


class Memory(SQLModel, table=True):
    """A long-term memory record of agentkit's ``StoreBackedMemory``, per namespace (agent)."""

    __tablename__ = "memories"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    namespace: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    text: str = Field(sa_column=Column(Text(), nullable=False))
    # "metadata" is reserved on SQLModel/SQLAlchemy classes, hence the attribute name.
    meta: dict[str, Any] = Field(default=None, sa_column=Column("metadata", JSONType, nullable=False))
    created_at: datetime = _ts(nullable=False)


@dataclass(frozen=True, slots=True)
class NewTask:
    tenant: str
    agent: str
    goal: str
    model: str
    max_retries: int
    timeout_seconds: int
    input: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    idempotency_key: str | None = None
    schedule_to_start_seconds: int | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    session_id: uuid.UUID | None = None
    callback_url: str | None = None
    # Not started before this (a delayed task); None: at once.
    run_after: datetime | None = None
    workflow_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """A row of the ``tasks`` table as the store reads it (see :class:`TaskTable` for the columns)."""

    id: uuid.UUID
    tenant: str
    agent: str
    goal: str
    model: str
    status: TaskStatus
    max_retries: int
    timeout_seconds: int
    created_at: datetime
    updated_at: datetime
    input: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    attempts: int = 0
    retry_base: int = 0
    schedule_to_start_seconds: int | None = None
    start_deadline: datetime | None = None
    priority: int = 0
    idempotency_key: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    reused_tokens: int = 0
    attempt_errors: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    cancel_requested: bool = False
    manual_retries: int = 0
    published_at: datetime | None = None
    run_after: datetime | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    session_id: uuid.UUID | None = None
    callback_url: str | None = None
    webhook_round: int | None = None
    last_event_seq: int = 0
    worker_id: str | None = None
    started_at: datetime | None = None
    claimed_at: datetime | None = None
    finished_at: datetime | None = None
    workflow_id: uuid.UUID | None = None

    @property
    def configured_max_retries(self) -> int:
        return self.max_retries - self.retry_base

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Task:
        """A record from a row that has every column of :data:`TASK_COLUMNS`, read by name."""
        values = {name: row[name] for name in TASK_COLUMNS}
        values["status"] = TaskStatus(values["status"])
        return cls(**values)


# Every column a task read returns, in table order; statements name them instead of ``*``.
TASK_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Task))


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent:
    """A row of the ``task_events`` table."""

    id: int
    task_id: uuid.UUID
    seq: int
    attempt: int
    type: str
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> TaskEvent:
        return cls(**{name: row[name] for name in EVENT_COLUMNS})


EVENT_COLUMNS: tuple[str, ...] = ("id", "task_id", "seq", "attempt", "type", "payload", "created_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChange:
    """A task's status event, as a tenant's stream of status changes carries it (``id`` orders the stream)."""

    id: int
    task_id: uuid.UUID
    agent: str
    seq: int
    attempt: int
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StatusChange:
        return cls(**{name: row[name] for name in STATUS_CHANGE_COLUMNS})


STATUS_CHANGE_COLUMNS: tuple[str, ...] = ("id", "task_id", "agent", "seq", "attempt", "payload", "created_at")


@dataclass(frozen=True, slots=True)
class EventHead:
    """How far a task's event log goes, and where the task stands."""

    last_event_seq: int
    status: TaskStatus


@dataclass(frozen=True, slots=True)
class Claim:
    task: Task
    attempt: int


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: list[Task]
    next_cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageTotal:
    """Tokens spent by one tenant's tasks of one agent on one model."""

    tenant: str
    agent: str
    model: str
    tasks: int
    input_tokens: int
    output_tokens: int
    reused_tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusCount:
    """How many of the tasks submitted in a window are in one status now; how many of them started, and
    their summed and longest wait from submission to first start (seconds)."""

    status: TaskStatus
    tasks: int
    started: int
    lag_sum: float
    lag_max: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedCount:
    """How many of the tasks submitted in a window finished in one status in bucket ``bucket`` of it
    (bucket k spans ``since + k * width`` to ``since + (k + 1) * width``)."""

    bucket: int
    status: TaskStatus
    tasks: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStats:
    """What one tenant's tasks submitted since a time did: for a dashboard's overview."""

    by_status: list[StatusCount]
    finished: list[FinishedCount]


@dataclass(frozen=True, slots=True)
class WorkerView:
    id: str
    host: str
    pid: int
    concurrency: int
    started_at: datetime
    last_heartbeat: datetime
    running_task_ids: list[uuid.UUID]


# The tables as Core objects, for the SQLite backend's statements, the memory store and tests.
TASKS: Table = SQLModel.metadata.tables["tasks"]
EVENTS: Table = SQLModel.metadata.tables["task_events"]
WORKERS: Table = SQLModel.metadata.tables["workers"]
MEMORIES: Table = SQLModel.metadata.tables["memories"]
TENANTS: Table = SQLModel.metadata.tables["tenants"]
API_KEYS: Table = SQLModel.metadata.tables["api_keys"]
APPROVALS: Table = SQLModel.metadata.tables["approvals"]
RATE_LIMITS: Table = SQLModel.metadata.tables["rate_limits"]
SESSIONS: Table = SQLModel.metadata.tables["sessions"]
WEBHOOK_SECRETS: Table = SQLModel.metadata.tables["webhook_secrets"]
WEBHOOK_DELIVERIES: Table = SQLModel.metadata.tables["webhook_deliveries"]
WEBHOOK_ATTEMPTS: Table = SQLModel.metadata.tables["webhook_attempts"]
SCHEDULES: Table = SQLModel.metadata.tables["schedules"]
SCHEDULE_PENDING_TICKS: Table = SQLModel.metadata.tables["schedule_pending_ticks"]
WORKFLOWS: Table = SQLModel.metadata.tables["workflows"]
WORKFLOW_STEPS: Table = SQLModel.metadata.tables["workflow_steps"]
REMOTE_AGENTS: Table = SQLModel.metadata.tables["remote_agents"]
REMOTE_RUNS: Table = SQLModel.metadata.tables["remote_runs"]
REMOTE_CALLBACKS: Table = SQLModel.metadata.tables["remote_callbacks"]
