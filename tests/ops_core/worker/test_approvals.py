"""A run that needs a person's approval: it parks (waiting, no worker held), then resumes on the decision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentkit import AgentDefinition, Policy
from agentkit.builtin_tools import calculator
from agentkit.messages import ToolCall, Usage
from agentkit.models import infer_model
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.registry import AgentRegistry
from agentkit.testing import FunctionModel
from ops_core.config import Settings
from ops_core.db.approvals import ApprovalStore, Decision
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import Task
from ops_core.db.store import TaskStore
from ops_core.domain import ApprovalStatus
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.execute import Execution, ExecutionContext
from ops_core.worker.models import ModelCache
from tests.ops_core.db.helpers import TENANT, make_task

GATED = AgentDefinition(
    name="gated",
    instructions="Calculates, with a person's approval.",
    tools=[calculator],
    policy=Policy(require_approval={"calculator"}, approval_timeout=600),
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TaskStore]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url))
    try:
        yield open_store(engine)
    finally:
        await engine.dispose()


class Harness:
    """Runs attempts of a task as a worker would, counting the model's calls per step."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.approvals = ApprovalStore(store.engine)
        offline = infer_model("offline:default")
        self.calls: list[int] = []

        async def counted(request: ModelRequest) -> ModelResponse:
            self.calls.append(1 + sum(m.role == "tool" for m in request.messages))
            return await offline.request(request)

        models = ModelCache()
        models._models["offline:default"] = FunctionModel(counted)
        self.ctx = ExecutionContext(
            store, AgentRegistry([GATED]), models, Settings(), self._republish, approvals=self.approvals
        )

    async def _republish(self, task: Task, delay: float) -> None:
        raise AssertionError("nothing here is retried")

    async def attempt(self, task_id: Any) -> Task:
        claim = await self.store.claim(task_id, "w1")
        assert claim is not None
        await Execution(self.ctx, claim, cancelled=asyncio.Event()).run()
        return await self.store.get(task_id, tenant=EVERY_TENANT)

    async def waiting_task(self) -> Task:
        task = await make_task(self.store, agent="gated", goal="What is 6 * 7?", model="offline:default")
        parked = await self.attempt(task.id)
        assert parked.status is TaskStatus.WAITING, parked
        return parked

    async def the_call(self, task: Task) -> str:
        [asked] = await self.approvals.list(tenant=TENANT, task_id=task.id, status=ApprovalStatus.PENDING)
        assert asked.tool == "calculator" and asked.arguments == {"expression": "6 * 7"}
        return asked.call_id

    async def tool_results(self, task: Task) -> list[dict[str, Any]]:
        events = await self.store.list_events(task.id, tenant=TENANT)
        return [e.payload for e in events if e.type == "tool_result"]


async def test_an_approved_call_runs_and_the_model_is_not_asked_again(store: TaskStore) -> None:
    run = Harness(store)
    parked = await run.waiting_task()

    assert parked.attempts == 0, "waiting gave its attempt back"
    assert parked.checkpoint is not None and parked.checkpoint["steps_completed"] == 0
    assert (parked.input_tokens, parked.output_tokens) != (0, 0), "the step's model call is paid for once"
    call_id = await run.the_call(parked)
    decided = await run.approvals.decide(
        parked.id, call_id, Decision(status=ApprovalStatus.APPROVED, decided_by="k1"), tenant=TENANT
    )
    assert decided.task.status is TaskStatus.PENDING

    done = await run.attempt(parked.id)

    assert done.status is TaskStatus.COMPLETED, done
    assert "42" in str(done.result)
    assert run.calls == [1, 2], "step 1's model call was not made again"
    [result] = await run.tool_results(done)
    assert result["content"] == "42" and not result["is_error"]
    types = [e.type for e in await store.list_events(done.id, tenant=TENANT)]
    assert types.count("approval_requested") == 1 and types.count("approval_decided") == 1


async def test_a_denied_call_is_told_to_the_model(store: TaskStore) -> None:
    run = Harness(store)
    parked = await run.waiting_task()
    decision = Decision(status=ApprovalStatus.DENIED, decided_by="k1", reason="not on a Sunday")
    await run.approvals.decide(parked.id, await run.the_call(parked), decision, tenant=TENANT)

    done = await run.attempt(parked.id)

    [result] = await run.tool_results(done)
    assert result["is_error"] and "not on a Sunday" in result["content"]
    assert run.calls == [1, 2]
    assert done.status is TaskStatus.COMPLETED


async def test_edited_arguments_are_what_the_tool_runs_with(store: TaskStore) -> None:
    run = Harness(store)
    parked = await run.waiting_task()
    decision = Decision(status=ApprovalStatus.APPROVED, decided_by="k1", arguments={"expression": "2 + 2"})
    await run.approvals.decide(parked.id, await run.the_call(parked), decision, tenant=TENANT)

    done = await run.attempt(parked.id)

    [result] = await run.tool_results(done)
    assert result["content"].endswith("\n4") and not result["is_error"]
    assert "edited arguments" in result["content"], "the model is told its call was changed"
    assert result["arguments"] == {"expression": "2 + 2"}


async def test_a_timed_out_call_is_denied_as_timed_out(store: TaskStore) -> None:
    run = Harness(store)
    parked = await run.waiting_task()
    timed_out = Decision(status=ApprovalStatus.TIMED_OUT, decided_by="timeout", reason="timed out")
    await run.approvals.decide(parked.id, await run.the_call(parked), timed_out, tenant=TENANT)

    done = await run.attempt(parked.id)

    [result] = await run.tool_results(done)
    assert result["is_error"] and "timed out" in result["content"]


async def test_the_agents_timeout_sets_when_the_call_expires(store: TaskStore) -> None:
    run = Harness(store)
    parked = await run.waiting_task()

    [asked] = await run.approvals.list(tenant=TENANT, task_id=parked.id)
    waited = (asked.expires_at - asked.requested_at).total_seconds()
    assert 590 <= waited <= 610


def _two_calls(request: ModelRequest) -> ModelResponse:
    """Step 1 asks for two calculations at once; step 2 answers with what the tools said."""
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        calls = (
            ToolCall(id="a", name="calculator", arguments={"expression": "1 + 1"}),
            ToolCall(id="b", name="calculator", arguments={"expression": "2 + 2"}),
        )
        return ModelResponse(tool_calls=calls, finish_reason="tool_calls", usage=Usage(input_tokens=7, output_tokens=3))
    return ModelResponse(text=" | ".join(str(m.content) for m in results), usage=Usage(input_tokens=9, output_tokens=2))


async def test_each_call_of_a_step_is_decided_on_its_own(store: TaskStore) -> None:
    run = Harness(store)
    model = FunctionModel(_two_calls)
    run.ctx.models._models["offline:default"] = model
    task = await make_task(store, agent="gated", goal="two sums", model="offline:default")
    parked = await run.attempt(task.id)
    assert parked.status is TaskStatus.WAITING
    asked = await run.approvals.list(tenant=TENANT, task_id=task.id, status=ApprovalStatus.PENDING)
    assert sorted(a.call_id for a in asked) == ["a", "b"]

    approve = Decision(status=ApprovalStatus.APPROVED, decided_by="k1")
    deny = Decision(status=ApprovalStatus.DENIED, decided_by="k2", reason="too big")
    assert (await run.approvals.decide(task.id, "a", approve, tenant=TENANT)).task.status is TaskStatus.WAITING
    assert (await run.approvals.decide(task.id, "b", deny, tenant=TENANT)).task.status is TaskStatus.PENDING
    done = await run.attempt(task.id)

    assert done.status is TaskStatus.COMPLETED
    assert "2" in str(done.result) and "too big" in str(done.result)
    assert len(model.requests) == 2, "the first step's model call was made once"
    assert (done.input_tokens, done.output_tokens) == (16, 5), "each model call is paid for once"


async def test_a_cancel_requested_before_the_run_parks_ends_it_cancelled(store: TaskStore) -> None:
    run = Harness(store)
    task = await make_task(store, agent="gated", goal="What is 6 * 7?", model="offline:default")
    claim = await store.claim(task.id, "w1")
    assert claim is not None
    execution = Execution(run.ctx, claim, cancelled=asyncio.Event())
    # The flag lands in the database after the run's last cancel check: the park must not hide it.
    real_suspend = run.approvals.suspend

    async def flagged_first(*args: Any, **kwargs: Any) -> bool:
        await store.request_cancel(task.id, tenant=TENANT)
        return await real_suspend(*args, **kwargs)

    run.approvals.suspend = flagged_first  # type: ignore[method-assign]
    await execution.run()

    done = await store.get(task.id, tenant=TENANT)
    assert done.status is TaskStatus.CANCELLED, done
    assert done.input_tokens > 0, "the step's tokens are kept"
    types = [e.type for e in await store.list_events(task.id, tenant=TENANT)]
    assert "approval_requested" in types
    assert await run.approvals.list(tenant=TENANT, task_id=task.id) == []
