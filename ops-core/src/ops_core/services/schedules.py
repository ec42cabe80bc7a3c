"""Cron schedules: the API's side (create, read, pause, resume, delete) and what a tick submits.

A schedule's ``template`` is stored as the client gave it, with a ``kind``
naming what each tick creates. Only ``"task"`` exists today; another kind
(a workflow) adds a template class in ``api/schedule_schemas.py``, a check in
:meth:`ScheduleService.create` and a :data:`~ops_core.db.schedules.TickBuilder`
in :func:`tick_builder`.

What a task template leaves unset (model, retries, timeout) is resolved when
the tick fires, as a submit would resolve it then.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agentkit.registry import AgentRegistry
from ops_core.config import Settings, matches_any
from ops_core.db.models import NewTask
from ops_core.db.rules import utcnow
from ops_core.db.schedules import ACTIVE, Schedule, SchedulePage, ScheduleStore, TickBuilder, tick_key
from ops_core.db.store import new_task_row
from ops_core.errors import InvalidRequest, ModelNotAllowed
from ops_core.quotas import QuotaCache
from ops_core.schedule_rules import CatchUp, Cron, InvalidSchedule, next_runs
from ops_core.services.tasks import TaskService
from ops_core.tenancy import TenantScope

TASK_KIND = "task"
# How many upcoming run times a schedule shows.
SHOWN_RUNS = 5


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """A schedule with its next run times, as the API shows it."""

    schedule: Schedule
    next_runs: list[datetime]


class ScheduleService:
    def __init__(self, store: ScheduleStore, tasks: TaskService, quotas: QuotaCache) -> None:
        self.store = store
        self._tasks = tasks
        self._quotas = quotas

    async def create(
        self,
        *,
        tenant: str,
        cron: str,
        timezone: str,
        template: dict[str, Any],
        catch_up: CatchUp = CatchUp.SKIP,
        name: str | None = None,
    ) -> ScheduleView:
        parsed = _parse(cron, timezone)
        if template.get("kind") != TASK_KIND:
            raise InvalidRequest(f"template.kind: unknown kind {template.get('kind')!r}")
        # Refused now rather than at 3 a.m.: an unknown agent, or a model this server or tenant refuses.
        model = self._tasks.resolve_model(template["agent"], template.get("model"))
        allowed = (await self._quotas.quotas(tenant)).allowed_models
        if allowed is not None and not matches_any(model, allowed):
            raise ModelNotAllowed(f"template.model: {model!r} is not allowed for tenant {tenant!r}")
        if template.get("callback_url") is not None:
            await self._tasks.check_callback_url(str(template["callback_url"]))
        now = utcnow()
        schedule = Schedule(
            id=uuid.uuid4(),
            tenant=tenant,
            name=name,
            cron=parsed.expression,
            timezone=parsed.timezone,
            catch_up=catch_up.value,
            template=template,
            state=ACTIVE,
            next_run_at=parsed.next_after(now),
            last_tick_at=None,
            last_task_id=None,
            fired=0,
            skipped=0,
            created_at=now,
            updated_at=now,
        )
        return view(await self.store.create(schedule))

    async def get(self, schedule_id: uuid.UUID, *, tenant: TenantScope) -> ScheduleView:
        return view(await self.store.get(schedule_id, tenant=tenant))

    async def list(
        self, *, tenant: TenantScope, limit: int, cursor: str | None
    ) -> tuple[list[ScheduleView], str | None]:
        page: SchedulePage = await self.store.list(tenant=tenant, limit=limit, cursor=cursor)
        return [view(s) for s in page.items], page.next_cursor

    async def pause(self, schedule_id: uuid.UUID, *, tenant: TenantScope) -> ScheduleView:
        return view(await self.store.pause(schedule_id, tenant=tenant))

    async def resume(self, schedule_id: uuid.UUID, *, tenant: TenantScope) -> ScheduleView:
        """Active again from the next tick after now: the ticks that fell in the pause do not run."""
        current = await self.store.get(schedule_id, tenant=tenant)
        cron = _parse(current.cron, current.timezone)
        return view(await self.store.resume(schedule_id, cron.next_after(utcnow()), tenant=tenant))

    async def delete(self, schedule_id: uuid.UUID, *, tenant: TenantScope) -> None:
        await self.store.delete(schedule_id, tenant=tenant)


def view(schedule: Schedule) -> ScheduleView:
    if schedule.state != ACTIVE:
        return ScheduleView(schedule, [])
    cron = Cron(schedule.cron, schedule.timezone)
    return ScheduleView(schedule, [schedule.next_run_at, *next_runs(cron, schedule.next_run_at, SHOWN_RUNS - 1)])


def _parse(cron: str, timezone: str) -> Cron:
    try:
        return Cron.parse(cron, timezone)
    except InvalidSchedule as exc:
        raise InvalidRequest(str(exc)) from None


def new_task(schedule: Schedule, tick: datetime, *, settings: Settings, registry: AgentRegistry) -> NewTask:
    """What ``schedule``'s task template submits at ``tick``."""
    template = schedule.template
    agent = str(template["agent"])
    agent_model = registry.get(agent).model if agent in registry else None
    concurrency_key = template.get("concurrency_key")
    max_retries = template.get("max_retries")
    return NewTask(
        tenant=schedule.tenant,
        agent=agent,
        goal=str(template["goal"]),
        input=dict(template.get("input") or {}),
        model=template.get("model") or agent_model or settings.default_model,
        max_retries=settings.default_max_retries if max_retries is None else int(max_retries),
        timeout_seconds=template.get("timeout_seconds") or settings.default_timeout_seconds,
        priority=int(template.get("priority") or 0),
        idempotency_key=tick_key(schedule.id, tick),
        schedule_to_start_seconds=template.get("schedule_to_start_seconds"),
        concurrency_key=concurrency_key,
        concurrency_limit=None if concurrency_key is None else template.get("concurrency_limit") or 1,
        callback_url=template.get("callback_url"),
    )


def tick_builder(store: ScheduleStore, *, settings: Settings, registry: AgentRegistry) -> TickBuilder:
    """Creates, in the fire's transaction, what one tick of a schedule submits (by its template's kind)."""

    async def build(conn: AsyncConnection, schedule: Schedule, tick: datetime) -> uuid.UUID | None:
        kind = schedule.template.get("kind", TASK_KIND)
        if kind != TASK_KIND:
            raise ValueError(f"schedule {schedule.id}: no builder for template kind {kind!r}")
        row = new_task_row(new_task(schedule, tick, settings=settings, registry=registry), utcnow())
        return row.id if await store.insert_task(conn, row) else None

    return build
