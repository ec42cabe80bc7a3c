"""``/v1/stats``: throughput, failure rate and queue lag of the caller's tenant's recent tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from ops_core.api.auth import Reader
from ops_core.api.deps import SettingsDep, StoreDep, bounded
from ops_core.api.errors import AUTH, INVALID, UNAVAILABLE
from ops_core.api.routes.usage import parse_since
from ops_core.api.stats_schemas import StatsPublic
from ops_core.api.storable import StorableText
from ops_core.db.rules import utcnow
from ops_core.errors import InvalidRequest

router = APIRouter(prefix="/v1/stats", tags=["usage"], responses={**AUTH, **INVALID, **UNAVAILABLE})

DEFAULT_WINDOW = timedelta(hours=1)
MAX_BUCKETS = 1000


@router.get("")
async def get_stats(
    caller: Reader,
    store: StoreDep,
    settings: SettingsDep,
    since: Annotated[
        StorableText | None,
        Query(
            max_length=64,
            description="An ISO 8601 date-time with a timezone; default: an hour ago.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    bucket_seconds: Annotated[int, Query(ge=1, le=86_400)] = 300,
) -> StatsPublic:
    """The tasks submitted since ``since`` (an admin's: every tenant's): where they stand, how many finished
    per minute and per bucket, the failure rate, and their wait from submission to first start."""
    until = utcnow()
    start = until - DEFAULT_WINDOW if since is None else parse_since(since)
    if (until - start) / timedelta(seconds=bucket_seconds) > MAX_BUCKETS:
        raise InvalidRequest(f"query field 'bucket_seconds': the window holds more than {MAX_BUCKETS} buckets")
    async with bounded(settings):
        stats = await store.stats(tenant=caller.scope, since=start, bucket_seconds=bucket_seconds)
    return StatsPublic.build(stats, since=start, until=until, bucket_seconds=bucket_seconds)
