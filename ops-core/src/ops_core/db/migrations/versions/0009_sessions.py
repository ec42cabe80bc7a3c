"""Sessions: multi-turn conversations, whose turns are their tasks.

A ``sessions`` row holds the conversation's tenant, agent, metadata and whether
it is still open. Its turns are not copied anywhere: they are the tasks that
carry its ``session_id``, in submission order (db/sessions.py). The partial
index reads one session's tasks in that order and names no column a claim
changes, so claims stay HOT updates (see 0002).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ops_core.db.types import JSONType, UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_SESSION = "session_id IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index(
        "ix_sessions_tenant_created_at_id", "sessions", ["tenant", sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index("ix_sessions_created_at_id", "sessions", [sa.text("created_at DESC"), sa.text("id DESC")])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("session_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key("fk_tasks_session_id_sessions", "sessions", ["session_id"], ["id"])
    op.create_index(
        "ix_tasks_session_id",
        "tasks",
        ["session_id", "created_at", "id"],
        postgresql_where=sa.text(_IN_SESSION),
        sqlite_where=sa.text(_IN_SESSION),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_session_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint("fk_tasks_session_id_sessions", type_="foreignkey")
        batch.drop_column("session_id")
    op.drop_index("ix_sessions_created_at_id", table_name="sessions")
    op.drop_index("ix_sessions_tenant_created_at_id", table_name="sessions")
    op.drop_table("sessions")
