"""Count manual retries per task, so an operator's retries of one task are bounded.

Each manual retry renews a task's retry budget and keeps its history of
attempts; without a bound, one task retried by hand without end grows its row
and every read of it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("manual_retries", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("manual_retries")
