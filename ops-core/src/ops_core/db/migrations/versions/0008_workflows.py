"""Workflows: DAGs of steps, each step started as exactly one task.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ops_core.db.types import JSONType, UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STARTED = "status = 'started'"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("workflow_id", sa.Uuid(), nullable=True))
    op.create_table(
        "workflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_workflows_tenant_idempotency_key"),
    )
    op.create_index(
        "ix_workflows_tenant_created_at_id",
        "workflows",
        ["tenant", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "workflow_steps",
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name="fk_workflow_steps_workflow_id_workflows", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_workflow_steps_task_id_tasks", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workflow_id", "name", name="pk_workflow_steps"),
        sa.UniqueConstraint("task_id", name="uq_workflow_steps_task_id"),
    )
    op.create_index(
        "ix_workflow_steps_started",
        "workflow_steps",
        ["task_id"],
        postgresql_where=sa.text(_STARTED),
        sqlite_where=sa.text(_STARTED),
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_steps_started", table_name="workflow_steps")
    op.drop_table("workflow_steps")
    op.drop_index("ix_workflows_tenant_created_at_id", table_name="workflows")
    op.drop_table("workflows")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("workflow_id")
