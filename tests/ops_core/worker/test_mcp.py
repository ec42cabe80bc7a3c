"""A worker's MCP servers: one session per server shared by its runs, and durable steps across a resume."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from agentkit import AgentDefinition, AgentRegistry, Policy
from agentkit.mcp import McpServer, McpSessions
from agentkit.messages import AssistantMessage, ToolCall
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.testing import FunctionModel
from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import Task
from ops_core.db.store import TaskStore
from ops_core.lifecycle import TaskStatus
from ops_core.mcp_client import mcp_environment
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.execute import Execution, ExecutionContext
from ops_core.worker.models import ModelCache
from tests.ops_core.db.helpers import make_task
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_for

MODEL = "offline:default"


def counting_server() -> McpServer:
    return McpServer.stdio(
        "ours",
        sys.executable,
        ["-m", "tests.support.mcp_servers"],
        env={"MCP_TEST_CALLS": "${CALLS_FILE}"},  # resolved from the worker's settings, not from the task
        cwd=str(REPO_ROOT),
        prefix="ours",
    )


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[TaskStore]:
    engine = create_engine(Settings(database_url=sqlite_url))
    try:
        yield open_store(engine)
    finally:
        await engine.dispose()


async def _no_retry(task: Task, delay: float) -> None:
    raise AssertionError("nothing here is retried")


def _calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _settings(sqlite_url: str, calls_file: Path) -> Settings:
    return Settings(database_url=sqlite_url, mcp_env={"CALLS_FILE": str(calls_file)})  # type: ignore[arg-type]


async def test_runs_share_one_session_per_server_and_the_policy_sees_qualified_names(
    store: TaskStore, sqlite_url: str, tmp_path: Path
) -> None:
    calls_file = tmp_path / "calls"
    settings = _settings(sqlite_url, calls_file)
    registry = AgentRegistry(
        [AgentDefinition(name="mcp-agent", mcp_servers=[counting_server()], policy=Policy(deny={"ours_fail"}))]
    )
    sessions = McpSessions(mcp_environment(settings))
    ctx = ExecutionContext(store, registry, ModelCache(), settings, _no_retry, mcp=sessions)
    tasks = [
        await make_task(store, agent="mcp-agent", goal=f"Use ours_add with {n} and 1, then ours_fail", model=MODEL)
        for n in range(3)
    ]
    claims = [await store.claim(task.id, "w1") for task in tasks]
    await asyncio.gather(*(Execution(ctx, c, cancelled=asyncio.Event()).run() for c in claims if c is not None))

    for n, task in enumerate(tasks):
        done = await store.get(task.id, tenant=EVERY_TENANT)
        assert done.status is TaskStatus.COMPLETED, done.error_message
        assert f"ours_add result: {n + 1}" in str(done.result)
        events = await store.list_events(task.id, tenant=EVERY_TENANT)
        denied = [e.payload for e in events if e.type == "policy_decision" and e.payload["name"] == "ours_fail"]
        assert denied and denied[0]["verdict"] == "deny"
    assert sorted(_calls(calls_file)) == ["add 0 1", "add 1 1", "add 2 1"]  # and never "fail"
    [connection] = list(sessions)
    assert connection.connects == 1  # three runs, one server process
    server_pids = [
        p.pid for p in psutil.Process().children(recursive=True) if "tests.support.mcp_servers" in p.cmdline()
    ]
    assert len(server_pids) == 1

    await sessions.aclose()
    await wait_for(
        lambda: asyncio.sleep(
            0, [p for p in server_pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        ),
        lambda alive: alive == [],
        timeout=30,
        what="the MCP server process to end at shutdown",
    )


async def test_a_resumed_run_does_not_call_the_mcp_tool_of_a_finished_step_again(
    store: TaskStore, sqlite_url: str, tmp_path: Path
) -> None:
    calls_file = tmp_path / "calls"
    settings = _settings(sqlite_url, calls_file)
    registry = AgentRegistry([AgentDefinition(name="mcp-agent", mcp_servers=[counting_server()])])
    stuck = asyncio.Event()
    model_calls: list[int] = []

    async def model(request: ModelRequest) -> ModelResponse:
        steps_done = sum(isinstance(m, AssistantMessage) for m in request.messages)
        model_calls.append(steps_done + 1)
        if steps_done == 0:
            call = ToolCall(id="c1", name="ours_add", arguments={"a": 40, "b": 2})
            return ModelResponse(tool_calls=(call,), finish_reason="tool_calls")
        if len(model_calls) == 2:
            stuck.set()
            await asyncio.Event().wait()  # the first attempt dies here, after step 1 was checkpointed
        return ModelResponse(text=f"the sum is {request.messages[-1].content}")

    models = ModelCache()
    models._models[MODEL] = FunctionModel(model)
    async with McpSessions(mcp_environment(settings)) as sessions:
        ctx = ExecutionContext(store, registry, models, settings, _no_retry, mcp=sessions)
        task = await make_task(store, agent="mcp-agent", goal="add 40 and 2", model=MODEL)
        first = await store.claim(task.id, "w1")
        assert first is not None
        execution = Execution(ctx, first, cancelled=asyncio.Event())
        running = asyncio.create_task(execution.run())
        await asyncio.wait_for(stuck.wait(), 60)
        saved = await store.get(task.id, tenant=EVERY_TENANT)
        assert saved.checkpoint is not None and saved.checkpoint["steps_completed"] == 1
        running.cancel()  # the worker goes away mid-step 2
        with pytest.raises(asyncio.CancelledError):
            await running
        await execution.recorder.flush()  # as the runner does before it hands a run back
        assert await store.hand_back(task.id, first.attempt, reason="worker lost")

        second = await store.claim(task.id, "w2")
        assert second is not None and second.task.checkpoint is not None
        await Execution(ctx, second, cancelled=asyncio.Event()).run()

    done = await store.get(task.id, tenant=EVERY_TENANT)
    assert done.status is TaskStatus.COMPLETED and done.result == "the sum is 42"
    assert _calls(calls_file) == ["add 40 2"]  # the MCP tool ran once, in attempt 1
    assert model_calls == [1, 2, 2]  # step 1 was never asked again either
    events = await store.list_events(task.id, tenant=EVERY_TENANT)
    assert [e.type for e in events].count("tool_result") == 1
