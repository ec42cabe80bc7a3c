"""Index active tasks by a column no claim changes, so a task's status updates stay HOT.

Any index that mentions ``status`` (as a key or in its predicate) makes every
status change a non-HOT update in PostgreSQL: a new row version off the page
and a new entry in every index of the table, twice per task. One partial
index over unfinished tasks (``finished_at IS NULL``: pending or running)
serves every scan the old two did (the outbox relay, recovery, listing
pending or running tasks), and only the final transition changes its column.
``fillfactor`` leaves room on each page for the new row versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_WHERE = "finished_at IS NULL"
OUTBOX_WHERE = "status = 'pending' AND published_at IS NULL"


def upgrade() -> None:
    op.drop_index("ix_tasks_outbox", table_name="tasks")
    op.drop_index("ix_tasks_status_created_at", table_name="tasks")
    op.create_index(
        "ix_tasks_active",
        "tasks",
        ["created_at", "id"],
        postgresql_where=sa.text(ACTIVE_WHERE),
        sqlite_where=sa.text(ACTIVE_WHERE),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tasks SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tasks RESET (fillfactor)")
    op.drop_index("ix_tasks_active", table_name="tasks")
    op.create_index("ix_tasks_status_created_at", "tasks", ["status", "created_at"])
    op.create_index(
        "ix_tasks_outbox",
        "tasks",
        ["created_at"],
        postgresql_where=sa.text(OUTBOX_WHERE),
        sqlite_where=sa.text(OUTBOX_WHERE),
    )
