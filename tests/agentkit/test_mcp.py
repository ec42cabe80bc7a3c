"""MCP servers as agentkit toolsets: the reference ``mcp-server-time`` over stdio, our own server over HTTP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from agentkit import Agent, AgentDefinition, Policy, RunFailure, RunHooks, RunSuccess
from agentkit.errors import ToolDefinitionError, ToolsUnavailable
from agentkit.events import RunEventType
from agentkit.mcp import McpServer, McpSessions, McpTool, expand
from agentkit.testing import ScriptedModel
from tests.agentkit.helpers import EventLog, answer, call, calls
from tests.support.mcp_servers import HttpMcpServer
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_for

TIME = McpServer.stdio("time", sys.executable, ["-m", "mcp_server_time"], prefix="time")
TOKEN = "s3cret-token"


def ours(calls_file: Path | None = None) -> McpServer:
    env = {"MCP_TEST_CALLS": str(calls_file)} if calls_file else {}
    return McpServer.stdio(
        "ours", sys.executable, ["-m", "tests.support.mcp_servers"], env=env, cwd=str(REPO_ROOT), prefix="ours"
    )


@pytest.fixture
async def sessions() -> AsyncIterator[McpSessions]:
    async with McpSessions() as opened:
        yield opened


@pytest.fixture
def http_server() -> Iterator[HttpMcpServer]:
    server = HttpMcpServer(TOKEN).start()
    yield server
    server.stop()


def server_processes(command_part: str) -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if command_part in " ".join(p.cmdline())]


async def test_reference_time_server_tools_are_listed_with_their_schemas(sessions: McpSessions) -> None:
    tools = await sessions.toolset([TIME])
    assert tools.names() == ["time_get_current_time", "time_convert_time"]
    current = tools.get("time_get_current_time")
    assert isinstance(current, McpTool) and current.remote_name == "get_current_time"
    definition = current.definition()
    assert definition.parameters["required"] == ["timezone"]
    assert definition.parameters["properties"]["timezone"]["type"] == "string"
    assert "time" in definition.description.lower()


async def test_an_agent_calls_the_reference_server_with_the_usual_events(sessions: McpSessions) -> None:
    model = ScriptedModel(
        [
            calls(
                call("time_get_current_time", "c1", timezone="Asia/Tokyo"),
                call("time_get_current_time", "c2", timezone=7),  # invalid: never reaches the server
                call("time_convert_time", "c3", source_timezone="UTC", time="12:00", target_timezone="Asia/Tokyo"),
            ),
            answer("done"),
        ]
    )
    definition = AgentDefinition(name="clock", mcp_servers=[TIME], policy=Policy(deny={"time_convert_time"}))
    log = EventLog()
    outcome = await Agent(definition, model=model, mcp=sessions).run("what time is it?", hooks=RunHooks(on_event=log))

    assert isinstance(outcome, RunSuccess)
    requested = log.of(RunEventType.MODEL_REQUEST)[0].payload["tools"]
    assert requested == ["time_get_current_time", "time_convert_time"]
    results = {e.payload["id"]: e.payload for e in log.of(RunEventType.TOOL_RESULT)}
    assert not results["c1"]["is_error"] and '"timezone": "Asia/Tokyo"' in results["c1"]["content"]
    assert results["c2"]["error_kind"] == "invalid_arguments" and "is not of type 'string'" in results["c2"]["content"]
    assert results["c3"]["error_kind"] == "denied"  # the policy decides MCP tools by their qualified name
    decisions = {e.payload["id"]: e.payload["verdict"] for e in log.of(RunEventType.POLICY_DECISION)}
    assert decisions == {"c1": "allow", "c3": "deny"}


async def test_an_agent_without_sessions_opens_and_closes_its_own() -> None:
    model = ScriptedModel([calls(call("time_get_current_time", timezone="UTC")), answer("ok")])
    outcome = await Agent(AgentDefinition(name="clock", mcp_servers=[TIME]), model=model).run("time?")
    assert isinstance(outcome, RunSuccess)
    assert '"timezone": "UTC"' in str(outcome.messages[-2].content)
    await wait_for(
        lambda: asyncio.sleep(0, server_processes("mcp_server_time")), lambda p: p == [], timeout=30, what="exit"
    )


async def test_a_killed_stdio_server_is_restarted_for_the_next_call(sessions: McpSessions) -> None:
    tools = await sessions.toolset([TIME])
    connection = sessions.connection(TIME)
    first = await tools.get("time_get_current_time").run({"timezone": "UTC"}, None, default_timeout=30)  # type: ignore[union-attr]
    assert not first.is_error
    [process] = server_processes("mcp_server_time")
    process.kill()
    await wait_for(lambda: asyncio.sleep(0, connection.connected), lambda c: not c, timeout=30, what="loss noticed")

    again = await tools.get("time_get_current_time").run({"timezone": "UTC"}, None, default_timeout=30)  # type: ignore[union-attr]
    assert not again.is_error, again.content
    assert connection.connects == 2
    [restarted] = server_processes("mcp_server_time")
    assert restarted.pid != process.pid


async def test_a_call_in_flight_when_the_server_dies_is_a_retryable_tool_error(
    sessions: McpSessions, tmp_path: Path
) -> None:
    calls_file = tmp_path / "calls"
    server = ours(calls_file)
    model = ScriptedModel(
        [
            calls(call("ours_slow", "c1", seconds=60)),
            calls(call("ours_pid", "c2")),
            answer("done"),
        ]
    )
    log = EventLog()
    run = asyncio.create_task(
        Agent(AgentDefinition(name="a", mcp_servers=[server]), model=model, mcp=sessions).run(
            "go", hooks=RunHooks(on_event=log)
        )
    )
    await wait_for(
        lambda: asyncio.sleep(0, calls_file.read_text() if calls_file.exists() else ""),
        lambda text: "slow 60" in text,
        timeout=60,
        what="the slow call to reach the server",
    )
    [process] = server_processes("tests.support.mcp_servers")
    process.kill()
    outcome = await asyncio.wait_for(run, 60)

    assert isinstance(outcome, RunSuccess)
    results = {e.payload["id"]: e.payload for e in log.of(RunEventType.TOOL_RESULT)}
    assert results["c1"]["is_error"] and results["c1"]["error_kind"] == "retry"
    assert "call the tool again" in results["c1"]["content"]
    new_pid = int(results["c2"]["content"])
    assert new_pid != process.pid and sessions.connection(server).connects == 2


async def test_a_server_tool_error_and_a_timeout_are_tool_errors(sessions: McpSessions) -> None:
    server = ours()
    tools = await sessions.toolset([server])
    failed = await tools.get("ours_fail").run({}, None, default_timeout=30)  # type: ignore[union-attr]
    assert failed.is_error and failed.error_kind == "exception" and "always fails" in failed.content
    added = await tools.get("ours_add").run({"a": 2, "b": "3"}, None, default_timeout=30)  # type: ignore[union-attr]
    assert added.error_kind == "invalid_arguments"
    added = await tools.get("ours_add").run({"a": 2, "b": 3}, None, default_timeout=30)  # type: ignore[union-attr]
    assert added.content == "5"

    impatient = server.model_copy(update={"name": "impatient", "prefix": "imp", "timeout": 1.0})
    slow = (await sessions.toolset([impatient])).get("imp_slow")
    assert slow is not None
    timed_out = await slow.run({"seconds": 60}, None, default_timeout=30)
    assert timed_out.error_kind == "timeout" and "1s" in timed_out.content
    # A timed-out call is cancelled on the server; the connection stays up for the next one.
    assert (await slow.run({"seconds": 0}, None, default_timeout=30)).content == "slept 0.0"
    assert sessions.connection(server).connects == 1 and sessions.connection(impatient).connects == 1


async def test_http_server_with_a_bearer_header_from_the_environment(http_server: HttpMcpServer) -> None:
    server = McpServer.http(
        "remote", http_server.url, headers={"Authorization": "Bearer ${REMOTE_MCP_TOKEN}"}, prefix="remote"
    )
    model = ScriptedModel([calls(call("remote_add", a=20, b=22)), answer("42")])
    async with McpSessions(environ={"REMOTE_MCP_TOKEN": TOKEN}) as sessions:
        outcome = await Agent(AgentDefinition(name="a", mcp_servers=[server]), model=model, mcp=sessions).run("add")
    assert isinstance(outcome, RunSuccess)
    assert outcome.messages[-2].content == "42"
    assert http_server.calls == ["add 20 22"]
    assert http_server.guard.refused == 0


async def test_http_server_refusing_the_credentials_fails_the_run_retryably(http_server: HttpMcpServer) -> None:
    server = McpServer.http("remote", http_server.url, headers={"Authorization": "Bearer wrong"})
    model = ScriptedModel([answer("never asked")])
    outcome = await Agent(AgentDefinition(name="a", mcp_servers=[server]), model=model).run("add")
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, ToolsUnavailable)
    assert outcome.error.retryable and "could not be reached" in str(outcome.error)
    assert http_server.guard.refused >= 1 and model.remaining == 1


async def test_http_server_that_restarts_is_reconnected(sessions: McpSessions) -> None:
    first = HttpMcpServer(TOKEN).start()
    server = McpServer.http("remote", first.url, headers={"Authorization": f"Bearer {TOKEN}"})
    tools = await sessions.toolset([server])
    add = tools.get("add")
    assert add is not None
    assert (await add.run({"a": 1, "b": 1}, None, default_timeout=30)).content == "2"
    first.stop()
    lost = await add.run({"a": 1, "b": 2}, None, default_timeout=30)
    assert lost.error_kind == "retry", lost
    second = HttpMcpServer(TOKEN, port=first.port).start()
    try:
        assert (await add.run({"a": 1, "b": 3}, None, default_timeout=30)).content == "4"
        assert second.calls == ["add 1 3"] and sessions.connection(server).connects == 2
    finally:
        second.stop()


def test_a_missing_environment_variable_is_named() -> None:
    with pytest.raises(ToolDefinitionError, match=r"MISSING_TOKEN is not set"):
        expand("Bearer ${MISSING_TOKEN}", {})
    assert expand("a${X}b", {"X": "1"}) == "a1b"


def test_a_server_is_stdio_or_http() -> None:
    with pytest.raises(ValueError, match="exactly one of command"):
        McpServer(name="x")
    with pytest.raises(ValueError, match="exactly one of command"):
        McpServer(name="x", command="a", url="http://b")
    with pytest.raises(ValueError, match="headers are for HTTP"):
        McpServer(name="x", command="a", headers={"a": "b"})
    assert McpServer.stdio("x", "cmd", prefix="p").tool_name("a.b/c") == "p_a_b_c"


async def test_an_unstartable_server_fails_the_run_retryably() -> None:
    server = McpServer.stdio("nothing", "/nonexistent/mcp-server")
    outcome = await Agent(AgentDefinition(name="a", mcp_servers=[server]), model=ScriptedModel([])).run("go")
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, ToolsUnavailable)
    assert outcome.error.retryable and "'nothing'" in str(outcome.error)
