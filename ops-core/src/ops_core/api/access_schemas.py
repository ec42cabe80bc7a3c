"""Request and response bodies of ``/v1/keys``, ``/v1/tenants`` and ``/v1/usage``."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ops_core.api.storable import StorableText
from ops_core.db.models import UsageTotal
from ops_core.keys import DEFAULT_SCOPES, Scope
from ops_core.tenancy import TENANT_PATTERN

MAX_KEY_DAYS = 3650
Tenant = Annotated[str, StringConstraints(pattern=TENANT_PATTERN.pattern)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: Tenant = Field(description="The tenant whose data the key reaches: lower-case, digits, '_', '.', '-'.")
    scopes: list[Scope] = Field(default=list(DEFAULT_SCOPES), min_length=1, max_length=len(Scope))
    name: StorableText | None = Field(default=None, min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_KEY_DAYS)


class KeyPublic(BaseModel):
    """A key without its secret, which is shown once, when the key is created."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant: str
    name: str | None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyPublic):
    secret: str = Field(description="Send as 'Authorization: Bearer <secret>'. Shown only this once.")


class KeysPublic(BaseModel):
    items: list[KeyPublic]


class QuotasUpdate(BaseModel):
    """The quotas to change; a field left out keeps its value, null removes the limit."""

    model_config = ConfigDict(extra="forbid")

    max_running: int | None = Field(default=None, ge=1, le=1_000_000, description="Running tasks at once.")
    submissions_per_second: float | None = Field(default=None, gt=0, le=100_000)
    daily_token_budget: int | None = Field(
        default=None, ge=1, le=2**62, description="Input plus output tokens of the tasks submitted per UTC day."
    )
    allowed_models: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Comma-separated patterns, as OPSCORE_ALLOWED_MODELS; within what the server allows.",
    )


class QuotasPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tenant: str
    max_running: int | None
    submissions_per_second: float | None
    daily_token_budget: int | None
    allowed_models: str | None


class TenantsPublic(BaseModel):
    items: list[QuotasPublic]


class UsageRowPublic(BaseModel):
    tenant: str
    agent: str
    model: str
    tasks: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    reused_tokens: int

    @classmethod
    def from_total(cls, total: UsageTotal) -> UsageRowPublic:
        return cls(**asdict(total), total_tokens=total.input_tokens + total.output_tokens)


class UsagePublic(BaseModel):
    since: datetime
    items: list[UsageRowPublic] = Field(description="Totals of the tasks submitted since then, by agent and model.")
