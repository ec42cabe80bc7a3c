"""``/v1/tenants`` (admin): every tenant's quotas, and changing them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from agentkit.errors import UnknownProviderError
from agentkit.models import parse_model_string
from ops_core.api.access_schemas import QuotasPublic, QuotasUpdate, TenantsPublic
from ops_core.api.auth import Admin
from ops_core.api.deps import AccessDep, SettingsDep, bounded
from ops_core.api.errors import AUTH, INVALID, TOO_LARGE, UNAVAILABLE
from ops_core.config import comma_list
from ops_core.errors import InvalidModel
from ops_core.tenancy import TENANT_PATTERN

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], responses={**AUTH, **INVALID, **TOO_LARGE, **UNAVAILABLE})

TenantPath = Annotated[str, Path(pattern=TENANT_PATTERN.pattern)]


@router.get("")
async def list_tenants(caller: Admin, access: AccessDep, settings: SettingsDep) -> TenantsPublic:
    """Tenants that have a key or a quota, with their quotas."""
    async with bounded(settings):
        tenants = await access.list_tenants()
    return TenantsPublic(items=[QuotasPublic.model_validate(q) for q in tenants])


@router.get("/{tenant}")
async def get_tenant(tenant: TenantPath, caller: Admin, access: AccessDep, settings: SettingsDep) -> QuotasPublic:
    """A tenant's quotas (all null for a tenant nobody limited)."""
    async with bounded(settings):
        return QuotasPublic.model_validate(await access.quotas(tenant))


@router.patch("/{tenant}")
async def set_quotas(
    tenant: TenantPath, body: QuotasUpdate, caller: Admin, access: AccessDep, settings: SettingsDep
) -> QuotasPublic:
    """Change the quotas named in the body; every API process and worker applies them within
    OPSCORE_AUTH_CACHE_SECONDS."""
    changes = body.model_dump(include=body.model_fields_set)
    if changes.get("allowed_models") is not None:
        _check_patterns(changes["allowed_models"])
    async with bounded(settings):
        return QuotasPublic.model_validate(await access.set_quotas(tenant, changes))


def _check_patterns(patterns: str) -> None:
    if not comma_list(patterns):
        raise InvalidModel("allowed_models names no pattern; send null to use the server's allow-list")
    for pattern in comma_list(patterns):
        provider, colon, _ = pattern.partition(":")
        if not colon:
            raise InvalidModel(f"allowed_models pattern {pattern!r} needs a provider, e.g. 'openai:*'")
        if not any(char in provider for char in "*?["):
            try:
                parse_model_string(f"{provider}:model")
            except UnknownProviderError as exc:
                raise InvalidModel(f"allowed_models pattern {pattern!r}: {exc}") from None
