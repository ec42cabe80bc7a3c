"""``/v1/keys`` (admin): create, list and revoke API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from ops_core.api.access_schemas import KeyCreate, KeyCreated, KeyPublic, KeysPublic, Tenant
from ops_core.api.auth import Admin
from ops_core.api.deps import AccessDep, SettingsDep, bounded
from ops_core.api.errors import AUTH, INVALID, TOO_LARGE, UNAVAILABLE, error_doc
from ops_core.db.rules import utcnow
from ops_core.tenancy import EVERY_TENANT

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses={**AUTH, **INVALID, **TOO_LARGE, **UNAVAILABLE})

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The key's id (not its secret).")]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyCreate, caller: Admin, access: AccessDep, settings: SettingsDep) -> KeyCreated:
    """A new key for ``tenant``; the answer holds its secret, which is never shown again."""
    expires_at = None if body.expires_in_days is None else utcnow() + timedelta(days=body.expires_in_days)
    async with bounded(settings):
        key, secret = await access.create_key(
            tenant=body.tenant, scopes=body.scopes, name=body.name, expires_at=expires_at
        )
    return KeyCreated(**KeyPublic.model_validate(key).model_dump(), secret=secret)


@router.get("")
async def list_keys(
    caller: Admin, access: AccessDep, settings: SettingsDep, tenant: Annotated[Tenant | None, Query()] = None
) -> KeysPublic:
    """Every key (or one tenant's), revoked and expired ones included; never a secret."""
    async with bounded(settings):
        keys = await access.list_keys(tenant=EVERY_TENANT if tenant is None else tenant)
    return KeysPublic(items=[KeyPublic.model_validate(key) for key in keys])


@router.post("/{key_id}/revoke", responses={404: error_doc("No key with that id")})
async def revoke_key(key_id: KeyId, caller: Admin, access: AccessDep, settings: SettingsDep) -> KeyPublic:
    """Revoke a key: every API process refuses it within OPSCORE_AUTH_CACHE_SECONDS. Revoking twice is harmless."""
    async with bounded(settings):
        key = await access.revoke_key(key_id, tenant=EVERY_TENANT)
    return KeyPublic.model_validate(key)
