"""Approvals of tool calls, and concurrency keys on tasks.

A task that waits for a person holds one ``approvals`` row per tool call that
needs a decision, keyed by the step and the model's call id. A task may carry
a ``concurrency_key`` with a ``concurrency_limit``: at most that many tasks of
its tenant with that key run at once. The partial index serves the count of a
key's unfinished tasks and names no column a claim changes, so claims stay
HOT updates (see 0002).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ops_core.db.types import JSONType, UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYED = "finished_at IS NULL AND concurrency_key IS NOT NULL"
_PENDING = "status = 'pending'"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("concurrency_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("concurrency_limit", sa.Integer(), nullable=True))
    op.create_index(
        "ix_tasks_concurrency_key",
        "tasks",
        ["tenant", "concurrency_key", "created_at", "id"],
        postgresql_where=sa.text(_KEYED),
        sqlite_where=sa.text(_KEYED),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("arguments", JSONType, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("edited_arguments", JSONType, nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_approvals_task_id_tasks", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint("task_id", "step", "call_id", name="uq_approvals_task_id"),
    )
    op.create_index("ix_approvals_tenant_requested_at", "approvals", ["tenant", "requested_at"])
    op.create_index(
        "ix_approvals_expires_at",
        "approvals",
        ["expires_at"],
        postgresql_where=sa.text(_PENDING),
        sqlite_where=sa.text(_PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_approvals_expires_at", table_name="approvals")
    op.drop_index("ix_approvals_tenant_requested_at", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_tasks_concurrency_key", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("concurrency_limit")
        batch.drop_column("concurrency_key")
