"""``/v1/workers``: the worker processes that have heartbeated recently."""

from __future__ import annotations

from fastapi import APIRouter

from ops_core.api.auth import Admin
from ops_core.api.deps import SettingsDep, StoreDep, bounded
from ops_core.api.errors import AUTH, UNAVAILABLE
from ops_core.api.schemas import WorkerPublic, WorkersPublic

router = APIRouter(prefix="/v1/workers", tags=["workers"], responses=AUTH)

# A worker that missed this many heartbeats in a row is presumed dead.
MISSED_HEARTBEATS = 3


@router.get("", responses=UNAVAILABLE)
async def list_workers(caller: Admin, store: StoreDep, settings: SettingsDep) -> WorkersPublic:
    """(admin) Live workers with their last heartbeat and the ids of the tasks they are running."""
    stale_after = settings.heartbeat_seconds * MISSED_HEARTBEATS
    async with bounded(settings):
        workers = await store.live_workers(stale_after=stale_after)
    return WorkersPublic(items=[WorkerPublic.from_view(w) for w in workers])
