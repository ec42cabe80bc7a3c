from __future__ import annotations

import uuid
from typing import Any

from ops_core.db.models import Claim, NewTask, Task
from ops_core.db.store import TaskStore

TENANT = "t1"


def new_task(**overrides: Any) -> NewTask:
    values: dict[str, Any] = {
        "tenant": TENANT,
        "agent": "echo",
        "goal": "say hi",
        "model": "offline:default",
        "max_retries": 2,
        "timeout_seconds": 60,
        "input": {"x": 1},
    }
    values.update(overrides)
    return NewTask(**values)


async def make_task(store: TaskStore, **overrides: Any) -> Task:
    task, created = await store.create(new_task(**overrides))
    assert created
    return task


async def running_task(store: TaskStore, worker: str = "w1", **overrides: Any) -> Claim:
    task = await make_task(store, **overrides)
    claim = await store.claim(task.id, worker)
    assert claim is not None
    return claim


USAGE = {"input_tokens": 10, "output_tokens": 5, "reused_tokens": 0}


def unknown_id() -> uuid.UUID:
    return uuid.uuid4()
