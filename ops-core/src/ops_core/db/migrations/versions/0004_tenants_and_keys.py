"""Tenants, API keys, and a tenant on every task.

Every existing task goes to the tenant ``default``, the tenant a server with
auth disabled acts as. Idempotency keys become unique per tenant, and a
tenant's list has an index of its own (an admin's list across tenants keeps
``ix_tasks_created_at_id``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ops_core.db.types import JSONType, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("submissions_per_second", sa.Float(), nullable=True),
        sa.Column("daily_token_budget", sa.BigInteger(), nullable=True),
        sa.Column("allowed_models", sa.Text(), nullable=True),
        sa.Column("tat", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("scopes", JSONType, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    # A constant default is metadata-only in PostgreSQL: no table rewrite. New rows always name a tenant.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("tenant", sa.String(100), nullable=False, server_default="default"))
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("tenant", server_default=None)
        batch.drop_constraint("uq_tasks_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_tasks_tenant_idempotency_key", ["tenant", "idempotency_key"])
    op.create_index(
        "ix_tasks_tenant_created_at_id", "tasks", ["tenant", sa.text("created_at DESC"), sa.text("id DESC")]
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_tenant_created_at_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint("uq_tasks_tenant_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_tasks_idempotency_key", ["idempotency_key"])
        batch.drop_column("tenant")
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
