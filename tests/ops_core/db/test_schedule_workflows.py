"""Workflow schedules on both backends: each tick starts exactly one workflow, also after a ticker crash."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text

from agentkit.registry import default_registry
from ops_core.api.schedule_schemas import WorkflowTemplate
from ops_core.config import Settings
from ops_core.db.access import AccessStore
from ops_core.db.models import SCHEDULE_PENDING_TICKS, SCHEDULES, TASKS, WORKFLOWS
from ops_core.db.rules import utcnow
from ops_core.db.schedules import ACTIVE, Schedule, ScheduleStore, tick_key
from ops_core.db.store import TaskStore
from ops_core.db.workflows import WorkflowStore
from ops_core.quotas import QuotaCache
from ops_core.services.schedules import tick_builder
from ops_core.services.tasks import TaskService
from ops_core.services.workflows import WorkflowService
from ops_core.worker.scheduler import ScheduleTicker
from ops_core.workflow_lifecycle import StepStatus
from tests.ops_core.db.helpers import TENANT
from tests.ops_core.worker.helpers import RecordingPublisher

SETTINGS = Settings()
TEMPLATE = WorkflowTemplate.model_validate(
    {
        "kind": "workflow",
        "steps": [
            {"name": "fetch", "goal": "fetch the numbers", "model": "offline:default"},
            {"name": "report", "goal": "report {{steps.fetch.result}}", "depends_on": ["fetch"]},
        ],
    }
).stored()


@pytest.fixture
async def schedules(store: TaskStore) -> AsyncIterator[ScheduleStore]:
    async with store.engine.begin() as conn:
        await conn.execute(delete(SCHEDULES))
        await conn.execute(delete(SCHEDULE_PENDING_TICKS))
        if store.engine.dialect.name == "postgresql":
            await conn.execute(text("TRUNCATE workflows CASCADE"))
    yield ScheduleStore(store.engine)


@pytest.fixture
async def workflows(store: TaskStore) -> AsyncIterator[WorkflowService]:
    quotas = QuotaCache(AccessStore(store.engine), store, cache_seconds=0)
    tasks = TaskService(store, quotas, RecordingPublisher(), default_registry(), SETTINGS)  # type: ignore[arg-type]
    yield WorkflowService(WorkflowStore(store.engine), store, tasks)
    await tasks.close()  # its publish marks, before the engine goes


def every_second(next_run_at: datetime, tenant: str = TENANT) -> Schedule:
    now = utcnow()
    return Schedule(
        id=uuid.uuid4(),
        tenant=tenant,
        name=None,
        cron="* * * * * *",
        timezone="UTC",
        catch_up="skip",
        template=TEMPLATE,
        state=ACTIVE,
        next_run_at=next_run_at,
        last_tick_at=None,
        last_task_id=None,
        fired=0,
        skipped=0,
        created_at=now,
        updated_at=now,
    )


def ticker(
    schedules: ScheduleStore, store: TaskStore, workflows: WorkflowService | None, clock: list[datetime]
) -> ScheduleTicker:
    return ScheduleTicker(
        schedules,
        store,
        RecordingPublisher(),  # type: ignore[arg-type]
        default_registry(),
        SETTINGS,
        workflows=workflows,
        clock=lambda: clock[0],
    )


async def scheduled_workflows(store: TaskStore, schedule_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """Idempotency key → workflow id, of every workflow the schedule started."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(WORKFLOWS.c.idempotency_key, WORKFLOWS.c.id).where(
                WORKFLOWS.c.idempotency_key.like(f"schedule:{schedule_id}:%")
            )
        )
        return {str(key): workflow_id for key, workflow_id in rows}


async def owed(store: TaskStore) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(SCHEDULE_PENDING_TICKS)) or 0)


async def test_each_tick_starts_one_workflow_with_its_root_step(
    store: TaskStore, schedules: ScheduleStore, workflows: WorkflowService
) -> None:
    now = utcnow().replace(microsecond=0)
    made = await schedules.create(every_second(now - timedelta(seconds=1)))
    clock = [now]

    assert await ticker(schedules, store, workflows, clock).tick() == [], "no task of its own: the workflow's"

    started = await scheduled_workflows(store, made.id)
    assert set(started) == {tick_key(made.id, now - timedelta(seconds=1)), tick_key(made.id, now)}
    for workflow_id in started.values():
        view = await workflows.get(workflow_id, tenant=TENANT)
        assert [(s.name, s.status) for s in view.steps] == [
            ("fetch", StepStatus.STARTED),
            ("report", StepStatus.BLOCKED),
        ]
    after = await schedules.get(made.id, tenant=TENANT)
    assert (after.fired, after.last_tick_at, after.last_task_id) == (2, now, None)
    assert after.last_workflow_id == started[tick_key(made.id, now)]
    assert await owed(store) == 0

    # The same moment again: nothing due, nothing owed, nothing new.
    await ticker(schedules, store, workflows, clock).tick()
    assert len(await scheduled_workflows(store, made.id)) == 2
    async with store.engine.connect() as conn:
        roots = await conn.scalar(
            select(func.count()).select_from(TASKS).where(TASKS.c.workflow_id.in_(started.values()))
        )
    assert roots == 2, "one root task per workflow"


async def test_a_ticker_crash_after_the_fire_is_repaired_by_the_next_pass_once(
    store: TaskStore, schedules: ScheduleStore, workflows: WorkflowService
) -> None:
    """The fire committed (next_run_at moved on) but its ticker died before starting the workflow."""
    now = utcnow().replace(microsecond=0)
    made = await schedules.create(every_second(now))
    build = tick_builder(schedules, settings=SETTINGS, registry=default_registry())
    fired = await schedules.fire(made, ticks=[now], next_run_at=now + timedelta(seconds=1), skipped=0, build=build)
    assert fired == []
    assert await scheduled_workflows(store, made.id) == {}
    assert await owed(store) == 1

    # Nothing is due at `now`; the owed tick is started all the same, once, by any ticker.
    clock = [now + timedelta(milliseconds=100)]
    await asyncio.gather(*(ticker(schedules, store, workflows, clock).tick() for _ in range(2)))
    await ticker(schedules, store, workflows, clock).tick()

    started = await scheduled_workflows(store, made.id)
    assert list(started) == [tick_key(made.id, now)]
    after = await schedules.get(made.id, tenant=TENANT)
    assert (after.fired, after.last_workflow_id) == (1, started[tick_key(made.id, now)])
    assert await owed(store) == 0


async def test_a_crash_after_the_workflow_started_counts_it_once(
    store: TaskStore, schedules: ScheduleStore, workflows: WorkflowService
) -> None:
    """The ticker died after starting the workflow but before settling the owed tick."""
    now = utcnow().replace(microsecond=0)
    made = await schedules.create(every_second(now))
    build = tick_builder(schedules, settings=SETTINGS, registry=default_registry())
    await schedules.fire(made, ticks=[now], next_run_at=now + timedelta(seconds=1), skipped=0, build=build)
    body = {k: v for k, v in made.template.items() if k != "kind"}
    first, created = await workflows.submit_template(body, tenant=TENANT, idempotency_key=tick_key(made.id, now))
    assert created

    await ticker(schedules, store, workflows, [now + timedelta(milliseconds=100)]).tick()

    assert await scheduled_workflows(store, made.id) == {tick_key(made.id, now): first.workflow.id}
    after = await schedules.get(made.id, tenant=TENANT)
    assert (after.fired, after.last_workflow_id) == (1, first.workflow.id)
    assert await owed(store) == 0


async def test_a_template_that_can_no_longer_start_settles_its_tick_without_a_workflow(
    store: TaskStore, schedules: ScheduleStore, workflows: WorkflowService
) -> None:
    """Its agent left the registry since the schedule was created: logged, not retried forever."""
    now = utcnow().replace(microsecond=0)
    broken: dict[str, Any] = {**TEMPLATE, "steps": [{**TEMPLATE["steps"][0], "agent": "retired"}]}
    made = await schedules.create(every_second(now))
    async with store.engine.begin() as conn:
        await conn.execute(SCHEDULES.update().where(SCHEDULES.c.id == made.id).values(template=broken))

    await ticker(schedules, store, workflows, [now + timedelta(milliseconds=100)]).tick()

    assert await scheduled_workflows(store, made.id) == {}
    after = await schedules.get(made.id, tenant=TENANT)
    assert (after.fired, after.last_workflow_id, after.next_run_at) == (0, None, now + timedelta(seconds=1))
    assert await owed(store) == 0


async def test_a_ticker_without_workflows_leaves_the_tick_owed(store: TaskStore, schedules: ScheduleStore) -> None:
    now = utcnow().replace(microsecond=0)
    made = await schedules.create(every_second(now))

    await ticker(schedules, store, None, [now + timedelta(milliseconds=100)]).tick()

    assert await scheduled_workflows(store, made.id) == {}
    assert await owed(store) == 1


async def test_deleting_the_schedule_drops_its_owed_ticks(store: TaskStore, schedules: ScheduleStore) -> None:
    now = utcnow().replace(microsecond=0)
    made = await schedules.create(every_second(now))
    await ticker(schedules, store, None, [now + timedelta(milliseconds=100)]).tick()
    assert await owed(store) == 1

    await schedules.delete(made.id, tenant=TENANT)

    assert await owed(store) == 0


async def test_two_concurrent_tickers_start_each_tick_once(
    store: TaskStore, schedules: ScheduleStore, workflows: WorkflowService
) -> None:
    start = utcnow().replace(microsecond=0) - timedelta(seconds=10)
    made = [await schedules.create(every_second(start + timedelta(seconds=1))) for _ in range(2)]
    clock = [start]
    tickers = [ticker(schedules, store, workflows, clock) for _ in range(2)]
    for second in range(1, 11):
        clock[0] = start + timedelta(seconds=second, milliseconds=500)
        await asyncio.gather(*(t.tick() for t in tickers))

    for s in made:
        started = await scheduled_workflows(store, s.id)
        assert sorted(started) == sorted(tick_key(s.id, start + timedelta(seconds=i)) for i in range(1, 11))
        assert (await schedules.get(s.id, tenant=TENANT)).fired == 10
    assert await owed(store) == 0


async def test_a_tick_the_tenants_rate_holds_back_stays_owed_until_it_may_start(
    store: TaskStore, schedules: ScheduleStore, workflows: WorkflowService
) -> None:
    now = utcnow().replace(microsecond=0)
    access = AccessStore(store.engine)
    await access.set_quotas(TENANT, {"submissions_per_second": 0.001})
    await QuotaCache(access, store, cache_seconds=0).admit_submission(TENANT)  # the tenant's one token, spent
    limited = await schedules.create(every_second(now - timedelta(seconds=1)))
    other = await schedules.create(every_second(now, tenant="t2"))
    clock = [now + timedelta(milliseconds=100)]

    await ticker(schedules, store, workflows, clock).tick()

    # Held back, not dropped; and the pass went on to the other tenant's tick.
    assert await scheduled_workflows(store, limited.id) == {}
    assert list(await scheduled_workflows(store, other.id)) == [tick_key(other.id, now)]
    assert await owed(store) == 2
    assert (await schedules.get(limited.id, tenant=TENANT)).fired == 0

    await access.set_quotas(TENANT, {"submissions_per_second": None})
    await ticker(schedules, store, workflows, clock).tick()

    assert len(await scheduled_workflows(store, limited.id)) == 2
    assert (await schedules.get(limited.id, tenant=TENANT)).fired == 2
    assert await owed(store) == 0
