"""``/v1/usage``: tokens spent by the caller's tenant, by agent and model."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ops_core.api.access_schemas import Tenant, UsagePublic, UsageRowPublic
from ops_core.api.auth import Reader
from ops_core.api.deps import SettingsDep, StoreDep, bounded
from ops_core.api.errors import AUTH, INVALID, UNAVAILABLE
from ops_core.api.storable import StorableText
from ops_core.db.rules import utcnow
from ops_core.errors import Forbidden, InvalidRequest
from ops_core.keys import Scope
from ops_core.quotas import midnight

router = APIRouter(prefix="/v1/usage", tags=["usage"], responses={**AUTH, **INVALID, **UNAVAILABLE})


@router.get("")
async def get_usage(
    caller: Reader,
    store: StoreDep,
    settings: SettingsDep,
    since: Annotated[
        StorableText | None,
        Query(
            max_length=64,
            description="An ISO 8601 date-time with a timezone, e.g. 2026-11-26T00:00:00Z; default: today 00:00 UTC.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    tenant: Annotated[Tenant | None, Query(description="(admin) One tenant; default: every tenant.")] = None,
) -> UsagePublic:
    """Token totals of the tasks submitted since ``since``, by agent and model (an admin's: by tenant too)."""
    start = midnight(utcnow()) if since is None else parse_since(since)
    if tenant is not None and not caller.allows(Scope.ADMIN):
        raise Forbidden("only an admin key reads another tenant's usage")
    scope = caller.scope if tenant is None else tenant
    async with bounded(settings):
        totals = await store.usage(tenant=scope, since=start)
    return UsagePublic(since=start, items=[UsageRowPublic.from_total(t) for t in totals])


def parse_since(text: str) -> datetime:
    """The ``since`` query field: an ISO 8601 date-time with a timezone; 422 otherwise."""
    # Parsed here, not by pydantic, which would also take "0.5" as seconds since 1970.
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"query field 'since': {text[:64]!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise InvalidRequest("query field 'since': must include a timezone, e.g. 2026-11-26T00:00:00Z")
    return value
