"""Cron schedules: one row per schedule of a tenant, with the first tick not yet handled.

Delayed tasks need no column: they use the tasks' ``run_after``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ops_core.db.types import JSONType, UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = "state = 'active'"


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(100), nullable=False),
        sa.Column("catch_up", sa.String(20), nullable=False),
        sa.Column("template", JSONType, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("last_tick_at", UTCDateTime(), nullable=True),
        sa.Column("last_task_id", sa.Uuid(), nullable=True),
        sa.Column("fired", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
    )
    op.create_index(
        "ix_schedules_tenant_created_at_id",
        "schedules",
        ["tenant", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_schedules_next_run_at",
        "schedules",
        ["next_run_at"],
        postgresql_where=sa.text(_ACTIVE),
        sqlite_where=sa.text(_ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("ix_schedules_next_run_at", table_name="schedules")
    op.drop_index("ix_schedules_tenant_created_at_id", table_name="schedules")
    op.drop_table("schedules")
