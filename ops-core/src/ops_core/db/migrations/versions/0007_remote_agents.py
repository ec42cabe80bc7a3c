"""Remote agents: their registrations, the attempts handed to them, and the callbacks accepted.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ops_core.db.types import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "remote_agents",
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name", name="pk_remote_agents"),
    )
    op.create_table(
        "remote_runs",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
        sa.Column("cancel_sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_remote_runs_task_id_tasks", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", name="pk_remote_runs"),
    )
    op.create_table(
        "remote_callbacks",
        sa.Column("msg_id", sa.String(200), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("msg_id", name="pk_remote_callbacks"),
    )
    op.create_index("ix_remote_callbacks_received_at", "remote_callbacks", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_remote_callbacks_received_at", table_name="remote_callbacks")
    op.drop_table("remote_callbacks")
    op.drop_table("remote_runs")
    op.drop_table("remote_agents")
