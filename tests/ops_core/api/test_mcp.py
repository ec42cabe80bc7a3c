"""``/mcp`` on the API, driven by the ``mcp`` SDK's own client over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ops_core.api.app import create_app
from ops_core.config import Settings
from ops_core.keys import Scope
from ops_core.queue.broker import setup_broker
from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.process import WorkerProcess
from tests.support.processes import free_port

TOOLS = {"submit_task", "get_task", "list_tasks", "cancel_task", "wait_for_task", "task_events"}


@pytest.fixture
def mcp_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"agents": "tests.support.agents"})


@pytest.fixture
async def served(mcp_settings: Settings) -> AsyncIterator[tuple[str, Runtime]]:
    """The API on a real port in this loop (its lifespan runs the MCP session manager), sharing its broker with
    a worker process's worth of workers in this process."""
    from ops_core.db import migrate

    await migrate.upgrade_async(mcp_settings)
    broker = setup_broker(mcp_settings)
    runtime = Runtime.open(mcp_settings, broker=broker)
    port = free_port()
    config = uvicorn.Config(create_app(mcp_settings, runtime=runtime), port=port, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    worker = WorkerProcess(mcp_settings, threads=2, concurrency=4, broker=broker, supervised=False)
    await asyncio.to_thread(worker.start)
    try:
        while not server.started:
            assert not serving.done(), "the API did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp", runtime
    finally:
        await asyncio.to_thread(worker.stop)
        server.should_exit = True
        await serving
        await runtime.close()


@asynccontextmanager
async def connect(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), cache=None) as client,
    ):
        yield client


async def key(runtime: Runtime, tenant: str, *scopes: Scope) -> str:
    _, secret = await runtime.access.create_key(tenant=tenant, scopes=scopes or (Scope.TASKS_READ, Scope.TASKS_WRITE))
    return secret


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    if result.is_error:
        # The SDK words a tool's error "Error executing tool <name>: <our message>".
        return {"error": text.removeprefix(f"Error executing tool {tool}: ")}
    return json.loads(text)


async def test_without_a_valid_key_the_server_refuses_before_any_tool(served: tuple[str, Runtime]) -> None:
    url, runtime = served
    submit = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "submit_task", "arguments": {"goal": "sneak in"}},
    }
    for bad in (None, "opsk_notakey"):
        with pytest.raises(Exception) as refused:
            async with connect(url, bad) as client:
                await client.list_tools()
        assert "MCPError" in repr(refused.value)
        headers = {"Accept": "application/json, text/event-stream"} | (
            {"Authorization": f"Bearer {bad}"} if bad else {}
        )
        async with httpx.AsyncClient() as http:
            answer = await http.post(url, json=submit, headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"
    assert (await runtime.store.list(tenant=EVERY_TENANT, status=None, agent=None, limit=10, cursor=None)).items == []


async def test_submit_then_wait_for_task_returns_the_completed_result(served: tuple[str, Runtime]) -> None:
    url, runtime = served
    async with connect(url, await key(runtime, "acme")) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) >= TOOLS
        assert listed["submit_task"].input_schema["required"] == ["goal"]

        submitted = await call(client, "submit_task", goal="What is 6 * 7?", idempotency_key="mcp-1")
        assert submitted["created"] is True and submitted["task"]["tenant"] == "acme"
        task_id = submitted["task"]["id"]
        again = await call(client, "submit_task", goal="What is 6 * 7?", idempotency_key="mcp-1")
        assert again == {"created": False, "task": again["task"]} and again["task"]["id"] == task_id

        waited = await call(client, "wait_for_task", task_id=task_id, timeout_seconds=60)
        assert waited["finished"] is True, waited
        assert waited["task"]["status"] == "completed" and "42" in str(waited["task"]["result"])

        events = await call(client, "task_events", task_id=task_id)
        types = [e["type"] for e in events["items"]]
        assert "tool_call" in types and types[-1] == "status"
        later = await call(client, "task_events", task_id=task_id, after_seq=events["items"][-2]["seq"])
        assert [e["type"] for e in later["items"]] == ["status"]
        assert (await call(client, "get_task", task_id=task_id))["status"] == "completed"


async def test_a_tenant_sees_only_its_own_tasks(served: tuple[str, Runtime]) -> None:
    url, runtime = served
    async with connect(url, await key(runtime, "acme")) as acme, connect(url, await key(runtime, "rival")) as rival:
        # sleepy's calculator naps for 30 s: the task is still there to cancel.
        mine = (await call(acme, "submit_task", goal="What is 6 * 7?", agent="sleepy"))["task"]["id"]
        assert [t["id"] for t in (await call(acme, "list_tasks"))["items"]] == [mine]
        assert (await call(rival, "list_tasks"))["items"] == []
        for tool in ("get_task", "cancel_task", "task_events", "wait_for_task"):
            refused = await call(rival, tool, task_id=mine)
            assert refused["error"].startswith("task_not_found"), (tool, refused)
        cancelled = await call(acme, "cancel_task", task_id=mine)
        assert cancelled["cancel_requested"] is True or cancelled["status"] == "cancelled", cancelled
        ended = await call(acme, "wait_for_task", task_id=mine, timeout_seconds=60)
        assert ended["finished"] and ended["task"]["status"] == "cancelled"


async def test_scopes_validation_and_errors_read_as_rest_words_them(served: tuple[str, Runtime]) -> None:
    url, runtime = served
    async with connect(url, await key(runtime, "acme", Scope.TASKS_READ)) as reader:
        refused = await call(reader, "submit_task", goal="hello")
        assert refused["error"] == "forbidden: this key lacks the tasks:write scope"
        assert (await call(reader, "get_task", task_id="nope"))["error"].startswith("invalid_request")
    async with connect(url, await key(runtime, "acme")) as writer:
        unknown = await call(writer, "submit_task", goal="hello", agent="nobody")
        assert unknown["error"].startswith("unknown_agent: unknown agent 'nobody'")
        too_high = await call(writer, "submit_task", goal="hello", priority=99)
        assert too_high["error"].startswith("invalid_request: priority")


async def test_edited_arguments_of_an_mcp_tool_are_left_to_the_worker_to_check(served: tuple[str, Runtime]) -> None:
    """The API process does not connect to an agent's MCP servers; the resumed run validates edits."""
    from datetime import timedelta

    from ops_core.db.approvals import NewApproval
    from ops_core.db.models import NewTask
    from ops_core.db.rules import utcnow

    _, runtime = served
    new = NewTask(
        tenant="acme", agent="clock", goal="time?", model="offline:default", max_retries=1, timeout_seconds=60
    )
    task, _ = await runtime.store.create(new)
    claim = await runtime.store.claim(task.id, "w-test")
    assert claim is not None
    asked = NewApproval(
        step=1,
        call_id="c1",
        tool="time_get_current_time",
        arguments={"timezone": "UTC"},
        reason="tool 'time_get_current_time' requires approval",
        expires_at=utcnow() + timedelta(hours=1),
    )
    assert await runtime.approvals.suspend(
        task.id, claim.attempt, checkpoint={}, approvals=[asked], input_tokens=0, output_tokens=0
    )
    decided = await runtime.approval_service.decide(
        task.id, "c1", tenant="acme", approve=True, decided_by="k1", arguments={"timezone": "Asia/Tokyo"}
    )
    assert decided.approval.edited_arguments == {"timezone": "Asia/Tokyo"}
