"""``/v1/schedules``: cron schedules of the caller's tenant: create, list, read, pause, resume, delete."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status

from ops_core.api.auth import Reader, Writer
from ops_core.api.deps import SettingsDep, bounded, get_runtime
from ops_core.api.errors import AUTH, INVALID, NOT_FOUND, TOO_LARGE, UNAVAILABLE
from ops_core.api.schedule_schemas import ScheduleCreate, SchedulePublic, SchedulesPublic
from ops_core.api.storable import StorableText
from ops_core.runtime import Runtime
from ops_core.services.schedules import ScheduleService

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=AUTH)

MAX_PAGE = 500


async def get_schedules(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ScheduleService:
    return runtime.schedules


Schedules = Annotated[ScheduleService, Depends(get_schedules)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SchedulePublic,
    responses={**TOO_LARGE, **INVALID, **UNAVAILABLE},
)
async def create_schedule(
    body: ScheduleCreate, caller: Writer, schedules: Schedules, settings: SettingsDep
) -> SchedulePublic:
    """Submit ``template`` at every tick of ``cron`` in ``timezone``; each tick fires once, whatever the
    number of workers and API instances."""
    async with bounded(settings):
        shown = await schedules.create(
            tenant=caller.tenant,
            cron=body.cron,
            timezone=body.timezone,
            template=body.template.stored(),
            catch_up=body.catch_up,
            name=body.name,
        )
    return SchedulePublic.from_view(shown)


@router.get("", response_model=SchedulesPublic, responses={**INVALID, **UNAVAILABLE})
async def list_schedules(
    caller: Reader,
    schedules: Schedules,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[StorableText | None, Query(min_length=1, max_length=500)] = None,
) -> SchedulesPublic:
    """The tenant's schedules, newest first; follow ``next_cursor`` for older pages."""
    async with bounded(settings):
        items, next_cursor = await schedules.list(tenant=caller.scope, limit=limit, cursor=cursor)
    return SchedulesPublic(items=[SchedulePublic.from_view(s) for s in items], next_cursor=next_cursor)


@router.get("/{schedule_id}", response_model=SchedulePublic, responses={**NOT_FOUND, **INVALID, **UNAVAILABLE})
async def get_schedule(
    schedule_id: UUID, caller: Reader, schedules: Schedules, settings: SettingsDep
) -> SchedulePublic:
    """The schedule with its next run times."""
    async with bounded(settings):
        shown = await schedules.get(schedule_id, tenant=caller.scope)
    return SchedulePublic.from_view(shown)


@router.post("/{schedule_id}/pause", response_model=SchedulePublic, responses={**NOT_FOUND, **INVALID, **UNAVAILABLE})
async def pause_schedule(
    schedule_id: UUID, caller: Writer, schedules: Schedules, settings: SettingsDep
) -> SchedulePublic:
    """Stop firing until resumed; pausing a paused schedule changes nothing."""
    async with bounded(settings):
        shown = await schedules.pause(schedule_id, tenant=caller.scope)
    return SchedulePublic.from_view(shown)


@router.post("/{schedule_id}/resume", response_model=SchedulePublic, responses={**NOT_FOUND, **INVALID, **UNAVAILABLE})
async def resume_schedule(
    schedule_id: UUID, caller: Writer, schedules: Schedules, settings: SettingsDep
) -> SchedulePublic:
    """Fire again from the next tick after now; the ticks that fell in the pause do not run."""
    async with bounded(settings):
        shown = await schedules.resume(schedule_id, tenant=caller.scope)
    return SchedulePublic.from_view(shown)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**NOT_FOUND, **INVALID, **UNAVAILABLE},
)
async def delete_schedule(schedule_id: UUID, caller: Writer, schedules: Schedules, settings: SettingsDep) -> Response:
    """Delete the schedule; the tasks it already submitted stay."""
    async with bounded(settings):
        await schedules.delete(schedule_id, tenant=caller.scope)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
