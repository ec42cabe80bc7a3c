"""Cron schedules: the API's side (create, read, pause, resume, delete) and what a tick submits.

A schedule's ``template`` is stored as the client gave it, with a ``kind``
naming what each tick creates:

* ``"task"``: a task, created in the fire's own transaction (:func:`tick_builder`),
  with what the template leaves unset (model, retries, timeout) filled in by
  :class:`~ops_core.services.tasks.TaskDefaults` when the tick fires, as a submit
  would fill it in then.
* ``"workflow"``: the body ``POST /v1/workflows`` takes, checked at creation as a
  submission is (:meth:`WorkflowService.check`: a 422 names the step). A workflow
  is created in its own transaction, so the fire records the tick as owed and
  the ticker starts it after the commit, with the key ``schedule:<id>:<tick>``
  (:func:`start_owed_workflows`); see :mod:`ops_core.db.schedules` for why each
  tick still starts exactly one workflow when a ticker crashes in between.

Another kind adds a template class in ``api/schedule_schemas.py``, a check in
:meth:`ScheduleService.create` and a branch in :func:`tick_builder`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentkit.registry import AgentRegistry
from ops_core.api.problems import describe_validation_errors
from ops_core.api.workflow_schemas import WorkflowCreate
from ops_core.config import Settings, matches_any
from ops_core.db.models import NewTask
from ops_core.db.rules import utcnow
from ops_core.db.schedules import ACTIVE, Schedule, SchedulePage, ScheduleStore, TickBuilder, tick_key
from ops_core.db.store import new_task_row
from ops_core.errors import Conflict, InvalidRequest, ModelNotAllowed, TooManyRequests
from ops_core.quotas import QuotaCache
from ops_core.schedule_rules import CatchUp, Cron, InvalidSchedule, next_runs
from ops_core.services.tasks import TaskDefaults, TaskService
from ops_core.services.workflows import WorkflowService
from ops_core.tenancy import TenantScope

log = logging.getLogger(__name__)

TASK_KIND = "task"
WORKFLOW_KIND = "workflow"
# How many upcoming run times a schedule shows.
SHOWN_RUNS = 5


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """A schedule with its next run times, as the API shows it."""

    schedule: Schedule
    next_runs: list[datetime]


class ScheduleService:
    def __init__(
        self, store: ScheduleStore, tasks: TaskService, quotas: QuotaCache, workflows: WorkflowService | None = None
    ) -> None:
        self.store = store
        self._tasks = tasks
        self._quotas = quotas
        self._workflows = workflows

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
        # Refused now rather than at 3 a.m.: an unknown agent, or a model this server or tenant refuses.
        kind = template.get("kind")
        if kind == TASK_KIND:
            model = self._tasks.resolve_model(template["agent"], template.get("model"))
            allowed = (await self._quotas.quotas(tenant)).allowed_models
            if allowed is not None and not matches_any(model, allowed):
                raise ModelNotAllowed(f"template.model: {model!r} is not allowed for tenant {tenant!r}")
            if template.get("callback_url") is not None:
                await self._tasks.check_callback_url(str(template["callback_url"]))
        elif kind == WORKFLOW_KIND and self._workflows is not None:
            request = workflow_request(template)
            await self._workflows.check(request, tenant=tenant, quotas=await self._quotas.quotas(tenant))
        else:
            raise InvalidRequest(f"template.kind: unknown kind {kind!r}")
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


def workflow_request(template: dict[str, Any]) -> WorkflowCreate:
    """The ``POST /v1/workflows`` body a workflow template stands for (the tick adds its key)."""
    body = {k: v for k, v in template.items() if k != "kind"}
    try:
        return WorkflowCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(f"template: {describe_validation_errors(exc.errors())}") from None


def new_task(schedule: Schedule, tick: datetime, *, defaults: TaskDefaults) -> NewTask:
    """What ``schedule``'s task template submits at ``tick``, with the defaults a submit would get."""
    template = schedule.template
    agent = str(template["agent"])
    return defaults.new_task(
        tenant=schedule.tenant,
        agent=agent,
        goal=str(template["goal"]),
        input=dict(template.get("input") or {}),
        model=defaults.default_model(agent, template.get("model")),
        idempotency_key=tick_key(schedule.id, tick),
        max_retries=template.get("max_retries"),
        timeout_seconds=template.get("timeout_seconds"),
        priority=int(template.get("priority") or 0),
        schedule_to_start_seconds=template.get("schedule_to_start_seconds"),
        concurrency_key=template.get("concurrency_key"),
        concurrency_limit=template.get("concurrency_limit"),
        callback_url=template.get("callback_url"),
    )


def tick_builder(store: ScheduleStore, *, settings: Settings, registry: AgentRegistry) -> TickBuilder:
    """Creates, in the fire's transaction, what one tick of a schedule submits (by its template's kind):
    a task, or, for a workflow, the owed tick that :func:`start_owed_workflows` starts after the commit."""
    defaults = TaskDefaults(registry, settings)

    async def build(conn: AsyncConnection, schedule: Schedule, tick: datetime) -> uuid.UUID | None:
        kind = schedule.template.get("kind", TASK_KIND)
        if kind == WORKFLOW_KIND:
            await store.defer_tick(conn, schedule, tick)
            return None
        if kind != TASK_KIND:
            raise ValueError(f"schedule {schedule.id}: no builder for template kind {kind!r}")
        row = new_task_row(new_task(schedule, tick, defaults=defaults), utcnow())
        return row.id if await store.insert_task(conn, row) else None

    return build


async def start_owed_workflows(store: ScheduleStore, workflows: WorkflowService) -> list[uuid.UUID]:
    """Start the workflow of every owed tick (just fired, or left by a crashed ticker); the ids started.

    A tick whose workflow can no longer start (its agent or model refused since the schedule was
    created, or its key taken by another workflow) is settled without one and logged; one the tenant's
    rate or budget holds back stays owed for the next pass.
    """
    started: list[uuid.UUID] = []
    for schedule, tick in await store.pending_ticks():
        key = tick_key(schedule.id, tick)
        workflow_id: uuid.UUID | None
        try:
            body = {k: v for k, v in schedule.template.items() if k != "kind"}
            shown, _ = await workflows.submit_template(body, tenant=schedule.tenant, idempotency_key=key)
            workflow_id = shown.workflow.id
        except TooManyRequests as exc:
            log.warning("schedule %s: the workflow of tick %s waits for the tenant's quota: %s", schedule.id, key, exc)
            continue
        except (InvalidRequest, Conflict) as exc:
            log.error("schedule %s: the workflow of tick %s cannot start: %s", schedule.id, key, exc)
            workflow_id = None
        if await store.settle_tick(schedule.id, tick, workflow_id) and workflow_id is not None:
            started.append(workflow_id)
    return started
