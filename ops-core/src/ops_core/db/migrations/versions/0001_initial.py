"""Initial schema: tasks, task_events, workers, memories.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from the models: a migration must keep
# meaning what it meant when it was written.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OUTBOX_WHERE = "status = 'pending' AND published_at IS NULL"


def _ts(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("goal", sa.Text(), nullable=False),
        sa.Column("input", JSON, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error_type", sa.String(100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("retry_base", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("schedule_to_start_seconds", sa.Integer(), nullable=True),
        _ts("start_deadline"),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("reused_tokens", sa.Integer(), nullable=False),
        sa.Column("attempt_errors", JSON, nullable=False),
        sa.Column("checkpoint", JSON, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        _ts("published_at"),
        _ts("run_after"),
        sa.Column("last_event_seq", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("started_at"),
        _ts("claimed_at"),
        _ts("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("idempotency_key", name="uq_tasks_idempotency_key"),
    )
    op.create_index("ix_tasks_created_at_id", "tasks", [sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index("ix_tasks_status_created_at", "tasks", ["status", "created_at"])
    op.create_index(
        "ix_tasks_outbox",
        "tasks",
        ["created_at"],
        postgresql_where=sa.text(OUTBOX_WHERE),
        sqlite_where=sa.text(OUTBOX_WHERE),
    )

    op.create_table(
        "task_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_task_events"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_task_events_task_id_tasks", ondelete="CASCADE"),
        sa.UniqueConstraint("task_id", "seq", name="uq_task_events_task_id_seq"),
    )

    op.create_table(
        "workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        _ts("started_at", nullable=False),
        _ts("last_heartbeat", nullable=False),
        _ts("stopped_at"),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )
    op.create_index("ix_workers_last_heartbeat", "workers", ["last_heartbeat"])

    op.create_table(
        "memories",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        _ts("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_memories"),
    )
    op.create_index("ix_memories_namespace", "memories", ["namespace"])


def downgrade() -> None:
    op.drop_index("ix_memories_namespace", table_name="memories")
    op.drop_table("memories")
    op.drop_index("ix_workers_last_heartbeat", table_name="workers")
    op.drop_table("workers")
    op.drop_table("task_events")
    op.drop_index("ix_tasks_outbox", table_name="tasks")
    op.drop_index("ix_tasks_status_created_at", table_name="tasks")
    op.drop_index("ix_tasks_created_at_id", table_name="tasks")
    op.drop_table("tasks")
