"""The relay: unpublished tasks go out; with an in-process broker, so does whatever a previous process published."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from ops_core.config import Settings
from ops_core.db.models import TASKS
from ops_core.db.store import TaskStore
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.relay import Relay
from tests.ops_core.db.helpers import make_task
from tests.ops_core.worker.helpers import AGENT, RecordingPublisher

AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"


async def _published_ago(store: TaskStore, seconds: float) -> uuid.UUID:
    task = await make_task(store, agent=AGENT)
    async with store.engine.begin() as conn:
        then = datetime.now(UTC) - timedelta(seconds=seconds)
        await conn.execute(update(TASKS).where(TASKS.c.id == task.id).values(published_at=then))
    return task.id


async def test_a_never_published_task_is_published_and_marked(store: TaskStore) -> None:
    publisher = RecordingPublisher()
    relay = Relay(store, publisher, Settings())  # type: ignore[arg-type]
    task = await make_task(store, agent=AGENT)

    await relay()

    assert task.id in publisher.published
    assert (await store.get(task.id, tenant=EVERY_TENANT)).published_at is not None


@pytest.mark.parametrize(("broker_url", "republished"), [("memory://", True), (AMQP, False)])
async def test_a_task_published_before_this_process_started(
    store: TaskStore, broker_url: str, republished: bool
) -> None:
    """An in-process queue starts empty, so the message of a task published before the start is gone:
    ``opscore dev`` restarted publishes it at once. RabbitMQ kept it: it waits for republish_after."""
    earlier = await _published_ago(store, 1.0)
    publisher = RecordingPublisher()
    relay = Relay(store, publisher, Settings(broker_url=broker_url))  # type: ignore[arg-type]

    await relay()
    await relay()  # marked published by the first pass: not sent twice

    assert publisher.published.count(earlier) == (1 if republished else 0)
