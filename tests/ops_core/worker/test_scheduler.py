"""The schedule ticker as a worker duty: publishing what it fired, and what it does when it cannot."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, update

from agentkit.registry import default_registry
from ops_core.config import Settings
from ops_core.db.models import SCHEDULES
from ops_core.db.rules import utcnow
from ops_core.db.schedules import ACTIVE, Schedule, ScheduleStore
from ops_core.db.store import TaskStore
from ops_core.errors import BrokerUnavailable
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.scheduler import ScheduleTicker
from tests.ops_core.worker.helpers import AGENT, RecordingPublisher


class DownPublisher:
    async def publish(self, task_id: uuid.UUID, *, priority: int = 0, delay_seconds: float = 0.0) -> None:
        raise BrokerUnavailable("connection refused")


@pytest.fixture
async def schedules(store: TaskStore) -> AsyncIterator[ScheduleStore]:
    async with store.engine.begin() as conn:
        await conn.execute(delete(SCHEDULES))
    yield ScheduleStore(store.engine)


async def every_second(schedules: ScheduleStore, next_run_at: datetime) -> Schedule:
    now = utcnow()
    return await schedules.create(
        Schedule(
            id=uuid.uuid4(),
            tenant="t1",
            name=None,
            cron="* * * * * *",
            timezone="UTC",
            catch_up="skip",
            # The worker conftest clears this agent's tasks between tests.
            template={"kind": "task", "agent": AGENT, "goal": "tick", "priority": 7},
            state=ACTIVE,
            next_run_at=next_run_at,
            last_tick_at=None,
            last_task_id=None,
            fired=0,
            skipped=0,
            created_at=now,
            updated_at=now,
        )
    )


def ticker(schedules: ScheduleStore, store: TaskStore, publisher: object, now: datetime) -> ScheduleTicker:
    return ScheduleTicker(
        schedules,
        store,
        publisher,  # type: ignore[arg-type]
        default_registry(),
        Settings(),
        clock=lambda: now,
    )


async def test_fired_tasks_are_published_and_marked(store: TaskStore, schedules: ScheduleStore) -> None:
    now = utcnow().replace(microsecond=0)
    await every_second(schedules, now)
    publisher = RecordingPublisher()

    created = await ticker(schedules, store, publisher, now + timedelta(milliseconds=10)).tick()

    assert len(created) == 1 and publisher.published == created
    assert (await store.get(created[0], tenant=EVERY_TENANT)).published_at is not None


async def test_with_the_broker_down_the_fired_task_waits_for_the_relay(
    store: TaskStore, schedules: ScheduleStore
) -> None:
    now = utcnow().replace(microsecond=0)
    await every_second(schedules, now)

    [task_id] = await ticker(schedules, store, DownPublisher(), now + timedelta(milliseconds=10)).tick()

    task = await store.get(task_id, tenant=EVERY_TENANT)
    assert task.published_at is None and task.priority == 7
    assert task_id in [t.id for t in await store.due_for_publish(limit=100)], "the relay sends it later"


async def test_a_schedule_that_cannot_be_planned_does_not_stop_the_others(
    store: TaskStore, schedules: ScheduleStore
) -> None:
    now = utcnow().replace(microsecond=0)
    broken = await every_second(schedules, now)
    healthy = await every_second(schedules, now)
    async with store.engine.begin() as conn:
        # As if the system's time zone database lost the zone after the schedule was created.
        await conn.execute(update(SCHEDULES).where(SCHEDULES.c.id == broken.id).values(timezone="Gone/Away"))

    created = await ticker(schedules, store, RecordingPublisher(), now + timedelta(milliseconds=10)).tick()

    assert len(created) == 1
    assert (await schedules.get(healthy.id, tenant=EVERY_TENANT)).fired == 1
    assert (await schedules.get(broken.id, tenant=EVERY_TENANT)).fired == 0
