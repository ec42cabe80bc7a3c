"""A workflow step's end, on the worker: the run advances its workflow at once, and the sweep repairs the rest."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops_core.api.workflow_schemas import WorkflowCreate
from ops_core.config import Settings, load_settings
from ops_core.db import migrate
from ops_core.db.models import Task
from ops_core.runtime import Runtime
from ops_core.worker.execute import Execution, ExecutionContext
from ops_core.worker.models import ModelCache
from ops_core.worker.workflow_sweep import WorkflowSweep
from ops_core.workflow_lifecycle import StepStatus, WorkflowStatus

TWO_STEPS = {
    "steps": [
        {"name": "a", "goal": "What is 6 * 7?", "model": "offline:default"},
        {"name": "b", "goal": "Check this: {{steps.a.result}}", "depends_on": ["a"], "model": "offline:default"},
    ]
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}", broker_url="memory://")


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    await migrate.upgrade_async(settings)
    opened = Runtime.open(settings)
    yield opened
    await opened.close()


async def run(runtime: Runtime, task_id: uuid.UUID, *, with_workflows: bool) -> None:
    async def republish(task: Task, delay: float) -> None:
        return None

    ctx = ExecutionContext(
        runtime.store,
        runtime.registry,
        ModelCache(),
        runtime.settings,
        republish,
        workflows=runtime.workflows if with_workflows else None,
    )
    claim = await runtime.store.claim(task_id, "w1")
    assert claim is not None
    await Execution(ctx, claim, cancelled=asyncio.Event()).run()


async def test_the_run_that_ends_a_step_starts_its_children(runtime: Runtime) -> None:
    view, _ = await runtime.workflows.submit(WorkflowCreate.model_validate(TWO_STEPS), tenant="t")
    first = view.steps[0].task_id
    assert first is not None
    await run(runtime, first, with_workflows=True)

    after = await runtime.workflows.get(view.workflow.id, tenant="t")
    a, b = after.steps
    assert a.status is StepStatus.COMPLETED and b.status is StepStatus.STARTED
    assert b.task_id is not None
    result = (await runtime.store.get(first, tenant="t")).result
    assert (await runtime.store.get(b.task_id, tenant="t")).goal == f"Check this: {result}"
    await run(runtime, b.task_id, with_workflows=True)
    done = await runtime.workflows.get(view.workflow.id, tenant="t")
    assert done.workflow.status is WorkflowStatus.COMPLETED


async def test_the_sweep_advances_what_a_step_end_left_behind(runtime: Runtime) -> None:
    view, _ = await runtime.workflows.submit(WorkflowCreate.model_validate(TWO_STEPS), tenant="t")
    first = view.steps[0].task_id
    assert first is not None
    # The run ends the step but its worker advances nothing (it died just after the write).
    await run(runtime, first, with_workflows=False)
    stuck = await runtime.workflows.get(view.workflow.id, tenant="t")
    assert [s.status for s in stuck.steps] == [StepStatus.STARTED, StepStatus.BLOCKED]

    await WorkflowSweep(runtime.workflows)()
    repaired = await runtime.workflows.get(view.workflow.id, tenant="t")
    assert [s.status for s in repaired.steps] == [StepStatus.COMPLETED, StepStatus.STARTED]
    await WorkflowSweep(runtime.workflows)()  # nothing more to do: no second start
    again = await runtime.workflows.get(view.workflow.id, tenant="t")
    assert again.steps[1].task_id == repaired.steps[1].task_id
    assert await runtime.workflows.due() == []
