"""Workflow schedules: the ticks fired but whose workflow is not yet confirmed started, and the last one started.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ops_core.db.types import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("last_workflow_id", sa.Uuid(), nullable=True))
    op.create_table(
        "schedule_pending_ticks",
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("tick", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "tick", name="pk_schedule_pending_ticks"),
    )


def downgrade() -> None:
    op.drop_table("schedule_pending_ticks")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("last_workflow_id")
