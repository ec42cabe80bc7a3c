"""Schedules in the store, on both backends: CRUD, tenancy, and each tick firing exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from agentkit.registry import default_registry
from ops_core.config import Settings
from ops_core.db.models import SCHEDULES, TASKS
from ops_core.db.rules import utcnow
from ops_core.db.schedules import ACTIVE, PAUSED, Schedule, ScheduleStore, tick_key
from ops_core.db.store import TaskStore
from ops_core.errors import InvalidRequest, ScheduleNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.schedule_rules import CatchUp
from ops_core.services.schedules import tick_builder
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.scheduler import ScheduleTicker
from tests.ops_core.db.helpers import TENANT
from tests.ops_core.worker.helpers import RecordingPublisher

TEMPLATE: dict[str, Any] = {"kind": "task", "agent": "default", "goal": "daily report", "input": {"day": 1}}
SETTINGS = Settings()


@pytest.fixture
async def schedules(store: TaskStore) -> AsyncIterator[ScheduleStore]:
    async with store.engine.begin() as conn:
        await conn.execute(delete(SCHEDULES))
    yield ScheduleStore(store.engine)


def schedule(
    next_run_at: datetime,
    *,
    cron: str = "* * * * * *",
    tenant: str = TENANT,
    catch_up: CatchUp = CatchUp.SKIP,
    created_at: datetime | None = None,
    **template: Any,
) -> Schedule:
    now = created_at or utcnow()
    return Schedule(
        id=uuid.uuid4(),
        tenant=tenant,
        name=None,
        cron=cron,
        timezone="UTC",
        catch_up=catch_up.value,
        template={**TEMPLATE, **template},
        state=ACTIVE,
        next_run_at=next_run_at,
        last_tick_at=None,
        last_task_id=None,
        fired=0,
        skipped=0,
        created_at=now,
        updated_at=now,
    )


def ticker(schedules: ScheduleStore, store: TaskStore, clock: list[datetime], **settings: Any) -> ScheduleTicker:
    return ScheduleTicker(
        schedules,
        store,
        RecordingPublisher(),  # type: ignore[arg-type]
        default_registry(),
        Settings(**settings),
        clock=lambda: clock[0],
    )


async def scheduled_tasks(store: TaskStore, schedule_id: uuid.UUID) -> list[str]:
    async with store.engine.connect() as conn:
        keys = await conn.execute(
            select(TASKS.c.idempotency_key)
            .where(TASKS.c.idempotency_key.like(f"schedule:{schedule_id}:%"))
            .order_by(TASKS.c.idempotency_key)
        )
        return [str(k) for k in keys.scalars()]


async def test_create_get_list_pause_resume_delete(store: TaskStore, schedules: ScheduleStore) -> None:
    base = utcnow()
    made = [await schedules.create(schedule(base, created_at=base + timedelta(seconds=i))) for i in range(5)]
    await schedules.create(schedule(base, tenant="other"))

    assert (await schedules.get(made[0].id, tenant=TENANT)).template == TEMPLATE
    with pytest.raises(ScheduleNotFound):
        await schedules.get(made[0].id, tenant="other")

    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await schedules.list(tenant=TENANT, limit=2, cursor=cursor)
        seen += [s.id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [s.id for s in reversed(made)], "newest first, no page skips or repeats one"
    assert len((await schedules.list(tenant=EVERY_TENANT, limit=50)).items) == 6
    with pytest.raises(InvalidRequest):
        await schedules.list(tenant=TENANT, cursor="not a cursor")

    paused = await schedules.pause(made[0].id, tenant=TENANT)
    assert paused.state == PAUSED
    assert (await schedules.pause(made[0].id, tenant=TENANT)).state == PAUSED
    assert made[0].id not in [s.id for s in await schedules.due(base + timedelta(days=1))]
    with pytest.raises(ScheduleNotFound):
        await schedules.pause(made[0].id, tenant="other")

    later = base + timedelta(hours=1)
    resumed = await schedules.resume(made[0].id, later, tenant=TENANT)
    assert (resumed.state, resumed.next_run_at) == (ACTIVE, later)

    with pytest.raises(ScheduleNotFound):
        await schedules.delete(made[1].id, tenant="other")
    await schedules.delete(made[1].id, tenant=TENANT)
    with pytest.raises(ScheduleNotFound):
        await schedules.get(made[1].id, tenant=TENANT)
    with pytest.raises(ScheduleNotFound):
        await schedules.delete(made[1].id, tenant=TENANT)


async def test_a_tick_creates_one_pending_task_from_the_template(store: TaskStore, schedules: ScheduleStore) -> None:
    now = utcnow().replace(microsecond=0)
    tick = now - timedelta(seconds=1)
    made = await schedules.create(schedule(tick, cron="* * * * * *", priority=5, max_retries=1))
    clock = [now]

    created = await ticker(schedules, store, clock).tick()

    assert len(created) == 2, "the ticks of now - 1 s and now"
    first = await store.get(created[0], tenant=TENANT)
    assert (first.status, first.agent, first.goal, first.input) == (
        TaskStatus.PENDING,
        "default",
        "daily report",
        {"day": 1},
    )
    assert (first.priority, first.max_retries, first.model) == (5, 1, SETTINGS.default_model)
    assert first.idempotency_key == tick_key(made.id, tick)
    events = await store.list_events(first.id, tenant=TENANT)
    assert [e.payload["to"] for e in events] == ["pending"]
    after = await schedules.get(made.id, tenant=TENANT)
    assert (after.next_run_at, after.last_tick_at, after.fired) == (now + timedelta(seconds=1), now, 2)
    assert after.last_task_id == created[1]
    # Fired and published: a second pass at the same moment finds nothing due.
    assert await ticker(schedules, store, clock).tick() == []


async def test_a_stale_fire_writes_nothing(store: TaskStore, schedules: ScheduleStore) -> None:
    """A ticker that read the schedule before another fired it loses the conditional UPDATE."""
    now = utcnow()
    made = await schedules.create(schedule(now - timedelta(seconds=1)))
    build = tick_builder(schedules, settings=SETTINGS, registry=default_registry())
    ticks = [made.next_run_at]

    first = await schedules.fire(made, ticks=ticks, next_run_at=now + timedelta(seconds=1), skipped=0, build=build)
    again = await schedules.fire(made, ticks=ticks, next_run_at=now + timedelta(seconds=1), skipped=0, build=build)

    assert first is not None and len(first) == 1
    assert again is None
    assert len(await scheduled_tasks(store, made.id)) == 1


async def test_a_replayed_tick_cannot_create_a_second_task(store: TaskStore, schedules: ScheduleStore) -> None:
    """Even if the schedule's next run were set back by hand, the tick's idempotency key holds."""
    now = utcnow()
    made = await schedules.create(schedule(now - timedelta(seconds=1)))
    build = tick_builder(schedules, settings=SETTINGS, registry=default_registry())
    tick = made.next_run_at
    assert await schedules.fire(made, ticks=[tick], next_run_at=now, skipped=0, build=build)
    rewound = await schedules.get(made.id, tenant=TENANT)

    replay = await schedules.fire(rewound, ticks=[tick], next_run_at=now + timedelta(1), skipped=0, build=build)

    assert replay == [], "handled, but the tick's task already existed"
    assert len(await scheduled_tasks(store, made.id)) == 1
    assert (await schedules.get(made.id, tenant=TENANT)).fired == 1


async def test_a_paused_schedule_does_not_fire(store: TaskStore, schedules: ScheduleStore) -> None:
    now = utcnow()
    made = await schedules.create(schedule(now - timedelta(seconds=5)))
    stale = await schedules.get(made.id, tenant=TENANT)
    await schedules.pause(made.id, tenant=TENANT)
    build = tick_builder(schedules, settings=SETTINGS, registry=default_registry())

    assert await schedules.fire(stale, ticks=[stale.next_run_at], next_run_at=now, skipped=0, build=build) is None
    assert await ticker(schedules, store, [now]).tick() == []


@pytest.mark.parametrize(("catch_up", "expected"), [(CatchUp.SKIP, 0), (CatchUp.RUN_LAST, 1)])
async def test_catch_up_after_downtime(
    store: TaskStore, schedules: ScheduleStore, catch_up: CatchUp, expected: int
) -> None:
    now = utcnow().replace(minute=30, second=0, microsecond=0)
    # Hourly; no ticker ran for five hours.
    made = await schedules.create(schedule(now - timedelta(hours=5, minutes=30), cron="0 * * * *", catch_up=catch_up))

    created = await ticker(schedules, store, [now]).tick()

    assert len(created) == expected
    after = await schedules.get(made.id, tenant=TENANT)
    assert after.next_run_at == now + timedelta(minutes=30), "next run in the future"
    assert after.skipped == 6 - expected
    if expected:
        last = now - timedelta(minutes=30)
        assert await scheduled_tasks(store, made.id) == [tick_key(made.id, last)]


async def test_two_concurrent_tickers_fire_each_tick_once(store: TaskStore, schedules: ScheduleStore) -> None:
    """Two tickers (two workers) pass over the same due schedules at the same moments, over and over."""
    start = utcnow().replace(microsecond=0) - timedelta(seconds=30)
    made = [await schedules.create(schedule(start + timedelta(seconds=1))) for _ in range(3)]
    clock = [start]
    tickers = [ticker(schedules, store, clock) for _ in range(2)]
    created: list[uuid.UUID] = []
    for second in range(1, 31):
        clock[0] = start + timedelta(seconds=second, milliseconds=500)
        for ids in await asyncio.gather(*(t.tick() for t in tickers)):
            created += ids

    assert len(created) == len(set(created)) == 3 * 30
    for s in made:
        keys = await scheduled_tasks(store, s.id)
        assert keys == sorted(tick_key(s.id, start + timedelta(seconds=i)) for i in range(1, 31))
        assert (await schedules.get(s.id, tenant=TENANT)).fired == 30
    async with store.engine.connect() as conn:
        total = await conn.scalar(
            select(func.count()).select_from(TASKS).where(TASKS.c.idempotency_key.like("schedule:%"))
        )
    assert total == 90


async def test_a_tick_fills_in_what_the_template_leaves_out_as_a_submit_would(
    store: TaskStore, schedules: ScheduleStore
) -> None:
    """One home for task defaults: the tick's task gets TaskService's (retries, timeout, concurrency limit)."""
    now = utcnow().replace(microsecond=0)
    settings = {"default_max_retries": 4, "default_timeout_seconds": 77, "default_model": "offline:fallback"}
    made = await schedules.create(schedule(now, concurrency_key="nightly", callback_url="https://hooks.example/x"))

    [task_id] = await ticker(schedules, store, [now + timedelta(milliseconds=100)], **settings).tick()

    task = await store.get(task_id, tenant=TENANT)
    assert (task.max_retries, task.timeout_seconds, task.model) == (4, 77, "offline:fallback")
    assert (task.concurrency_key, task.concurrency_limit) == ("nightly", 1)
    assert task.callback_url == "https://hooks.example/x"
    assert task.idempotency_key == tick_key(made.id, now)
