"""API keys and tenants' quotas on the ``api_keys`` and ``tenants`` tables.

These are read once per key or tenant per cache period, not once per task, so
one Core statement each serves PostgreSQL and SQLite (as ``memory.py`` does).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ops_core.db.engine import database_errors, read_only
from ops_core.db.models import API_KEYS, TENANTS
from ops_core.db.rules import utcnow
from ops_core.errors import KeyNotFound
from ops_core.keys import ApiKey, Scope, new_secret
from ops_core.tenancy import TenantScope, tenant_or_none

# Last use is kept to the minute: a write per request would put a write on every read.
LAST_USED_PRECISION = timedelta(minutes=1)
_OPTIMISTIC_ROUNDS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Quotas:
    """What an admin set for a tenant; None is no limit (or, for models, the deployment's allow-list)."""

    tenant: str
    max_running: int | None = None
    submissions_per_second: float | None = None
    daily_token_budget: int | None = None
    allowed_models: str | None = None

    @property
    def limits_submissions(self) -> bool:
        return self.submissions_per_second is not None or self.daily_token_budget is not None


QUOTA_FIELDS = ("max_running", "submissions_per_second", "daily_token_budget", "allowed_models")


@dataclass(frozen=True, slots=True)
class StoredKey:
    key: ApiKey
    secret_hash: str


class AccessStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    # ---- keys -----------------------------------------------------------------------------------

    async def create_key(
        self, *, tenant: str, scopes: Iterable[Scope], name: str | None = None, expires_at: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its secret, which is returned here once and never stored."""
        now = utcnow()
        made = new_secret()
        values: dict[str, Any] = {
            "id": made.key_id,
            "tenant": tenant,
            "name": name,
            "scopes": sorted({Scope(s).value for s in scopes}),
            "secret_hash": made.secret_hash,
            "created_at": now,
            "expires_at": expires_at,
        }
        async with database_errors(), self.engine.begin() as conn:
            await self._ensure_tenant(conn, tenant, now)
            await conn.execute(API_KEYS.insert().values(values))
        key = _key({**values, "revoked_at": None, "last_used_at": None})
        return key, made.secret

    async def list_keys(self, *, tenant: TenantScope) -> builtins.list[ApiKey]:
        stmt = select(API_KEYS).order_by(API_KEYS.c.tenant, API_KEYS.c.created_at, API_KEYS.c.id)
        if (scoped := tenant_or_none(tenant)) is not None:
            stmt = stmt.where(API_KEYS.c.tenant == scoped)
        async with self._read() as conn:
            return [_key(row) for row in (await conn.execute(stmt)).mappings()]

    async def revoke_key(self, key_id: str, *, tenant: TenantScope) -> ApiKey:
        """Revoke (idempotently: the first revocation time stays); :class:`KeyNotFound` outside ``tenant``."""
        where = [API_KEYS.c.id == key_id]
        if (scoped := tenant_or_none(tenant)) is not None:
            where.append(API_KEYS.c.tenant == scoped)
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(
                update(API_KEYS).where(*where, API_KEYS.c.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            row = (await conn.execute(select(API_KEYS).where(*where))).mappings().first()
        if row is None:
            raise KeyNotFound(f"key {key_id} not found")
        return _key(row)

    async def stored_key(self, key_id: str) -> StoredKey | None:
        """The key and its secret's hash, for checking a presented secret."""
        async with self._read() as conn:
            row = (await conn.execute(select(API_KEYS).where(API_KEYS.c.id == key_id))).mappings().first()
        return None if row is None else StoredKey(_key(row), row["secret_hash"])

    async def touch(self, key_id: str, now: datetime) -> None:
        """Record a use, unless one was recorded within :data:`LAST_USED_PRECISION`."""
        stale = now - LAST_USED_PRECISION
        stmt = (
            update(API_KEYS)
            .where(API_KEYS.c.id == key_id)
            .where(or_(API_KEYS.c.last_used_at.is_(None), API_KEYS.c.last_used_at < stale))
            .values(last_used_at=now)
        )
        async with database_errors(), self.engine.begin() as conn:
            await conn.execute(stmt)

    # ---- tenants ----------------------------------------------------------------------------------

    async def quotas(self, tenant: str) -> Quotas:
        async with self._read() as conn:
            row = (await conn.execute(select(TENANTS).where(TENANTS.c.id == tenant))).mappings().first()
        return Quotas(tenant=tenant) if row is None else _quotas(row)

    async def list_tenants(self) -> builtins.list[Quotas]:
        async with self._read() as conn:
            rows = (await conn.execute(select(TENANTS).order_by(TENANTS.c.id))).mappings().all()
        return [_quotas(row) for row in rows]

    async def set_quotas(self, tenant: str, changes: Mapping[str, Any]) -> Quotas:
        """Set the named quotas (None removes one); the others keep their values."""
        unknown = set(changes) - set(QUOTA_FIELDS)
        if unknown:
            raise ValueError(f"not quotas: {sorted(unknown)}")
        now = utcnow()
        async with database_errors(), self.engine.begin() as conn:
            await self._ensure_tenant(conn, tenant, now)
            if changes:
                await conn.execute(update(TENANTS).where(TENANTS.c.id == tenant).values(**changes, updated_at=now))
            row = (await conn.execute(select(TENANTS).where(TENANTS.c.id == tenant))).mappings().one()
        return _quotas(row)

    async def take_submission(self, tenant: str, per_second: float, burst: int, now: datetime) -> float:
        """One submission against the tenant's rate (GCRA); 0 if allowed, else seconds until one is."""
        taken, wait = await self.take_submissions(tenant, per_second, burst, 1, now)
        return 0.0 if taken else wait

    async def take_submissions(
        self, tenant: str, per_second: float, burst: int, count: int, now: datetime
    ) -> tuple[int, float]:
        """Up to ``count`` submissions against the tenant's rate (GCRA), as many as it allows now.

        Returns how many were taken and, if fewer than ``count``, the seconds
        until the next one is allowed. A batch of N counts as N submissions.
        The limiter's state is one timestamp on the tenant's row, moved by a
        conditional UPDATE, so the limit holds across every API instance.
        """
        interval = timedelta(seconds=1 / per_second)
        # How far ahead of now the theoretical arrival time may run: the burst beyond the first.
        tolerance = interval * (burst - 1)
        for _ in range(_OPTIMISTIC_ROUNDS):
            async with database_errors(), self.engine.begin() as conn:
                await self._ensure_tenant(conn, tenant, now)
                tat = (await conn.execute(select(TENANTS.c.tat).where(TENANTS.c.id == tenant))).scalar_one()
                start = max(tat or now, now)
                if start - now > tolerance:
                    return 0, max((start - tolerance - now).total_seconds(), 0.001)
                taken = min(count, int((tolerance - (start - now)) / interval) + 1)
                moved = await conn.execute(
                    update(TENANTS)
                    .where(TENANTS.c.id == tenant, TENANTS.c.tat.is_(None) if tat is None else TENANTS.c.tat == tat)
                    .values(tat=start + interval * taken)
                )
                if moved.rowcount == 1:
                    after = start + interval * taken
                    return taken, 0.0 if taken == count else max((after - tolerance - now).total_seconds(), 0.001)
        return 0, interval.total_seconds()

    async def _ensure_tenant(self, conn: AsyncConnection, tenant: str, now: datetime) -> None:
        stmt = self._insert(TENANTS).values(id=tenant, created_at=now, updated_at=now)
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=[TENANTS.c.id]))

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return read_only(self.engine)


def _key(row: Mapping[Any, Any]) -> ApiKey:
    return ApiKey(**{f.name: row[f.name] for f in fields(ApiKey)})


def _quotas(row: Mapping[Any, Any]) -> Quotas:
    return Quotas(tenant=row["id"], **{name: row[name] for name in QUOTA_FIELDS})
