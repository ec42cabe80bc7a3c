"""What the worker's tests share: a recording publisher, a settable clock, and aged orphans."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from agentkit.registry import default_registry
from ops_core.config import Settings
from ops_core.db.models import TASKS, WORKERS, Task
from ops_core.db.store import TaskStore
from ops_core.worker.execute import ExecutionContext
from ops_core.worker.models import ModelCache
from tests.ops_core.db.helpers import running_task

AGENT = "recovery-test"


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[uuid.UUID] = []

    async def publish(self, task_id: uuid.UUID, *, priority: int = 0, delay_seconds: float = 0.0) -> None:
        self.published.append(task_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def context(store: TaskStore, settings: Settings) -> ExecutionContext:
    async def republish(task: Task, delay: float) -> None:
        return None

    return ExecutionContext(store, default_registry(), ModelCache(), settings, republish)


async def age(store: TaskStore, worker: str, task_id: uuid.UUID, seconds: float) -> None:
    """Make the worker's heartbeat and the task's claim ``seconds`` old."""
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    async with store.engine.begin() as conn:
        await conn.execute(update(WORKERS).where(WORKERS.c.id == worker).values(last_heartbeat=then))
        await conn.execute(update(TASKS).where(TASKS.c.id == task_id).values(claimed_at=then))


async def orphan(store: TaskStore, seconds: float, **overrides: Any) -> uuid.UUID:
    """A running task whose (registered) worker last beat ``seconds`` ago."""
    worker = f"dead-{uuid.uuid4().hex[:6]}"
    await store.register_worker(worker, "h", 1, 1)
    claim = await running_task(store, worker=worker, agent=AGENT, **overrides)
    await age(store, worker, claim.task.id, seconds)
    return claim.task.id
