"""The periodic event flush writes the waiting events of every run, in one go."""

from __future__ import annotations

import asyncio

from ops_core.config import Settings
from ops_core.db.store import TaskStore
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.execute import Execution
from ops_core.worker.flush import EventFlush
from tests.ops_core.db.helpers import running_task
from tests.ops_core.worker.helpers import AGENT, context


async def test_the_periodic_flush_writes_the_waiting_events_of_every_run(store: TaskStore) -> None:
    ctx = context(store, Settings())
    claims = [await running_task(store, worker="me", agent=AGENT) for _ in range(3)]
    executions = [Execution(ctx, claim, asyncio.Event()) for claim in claims]
    executions[0].recorder.add("model_call", {"n": 0})
    executions[2].recorder.add("model_call", {"n": 2})

    await EventFlush(lambda: [e.recorder for e in executions])()

    types = [[e.type for e in await store.list_events(c.task.id, tenant=EVERY_TENANT)] for c in claims]
    assert types == [["status", "status", "model_call"], ["status", "status"], ["status", "status", "model_call"]]
    assert not any(e.recorder.pending for e in executions)
