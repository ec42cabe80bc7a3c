"""MCP live: a worker process's agent uses the reference ``mcp-server-time`` (from PyPI), and an MCP
client hands work to ops-core at ``/mcp``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psutil
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Stack
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ENV = {"OPSCORE_AGENTS": "tests.support.agents", "PYTHONPATH": str(REPO_ROOT)}
ZONES = ["Asia/Tokyo", "Europe/Paris", "America/New_York"]


def _time_servers(pool_pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pool_pid).children(recursive=True) if "mcp_server_time" in " ".join(p.cmdline())]


async def _call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, text
    return json.loads(text)


async def test_a_worker_runs_an_agent_on_the_reference_time_server(deployments: DeploymentFactory) -> None:
    deployment = deployments(workers=0, env=ENV)
    pool = deployment.start_worker(processes=1)
    deployment.wait_workers(1)
    async with deployment.client() as client:
        stack = Stack(deployment, client)
        ids = [
            (await stack.submit(goal=f"Call time_get_current_time for '{zone}'", agent="clock"))["id"] for zone in ZONES
        ]
        done = await asyncio.gather(*(stack.wait_status(task_id, TERMINAL, timeout=120) for task_id in ids))
        for zone, task in zip(ZONES, done, strict=True):
            assert task["status"] == "completed", (task, stack.logs())
            events = await stack.events(task["id"])
            [called] = [e["payload"] for e in events if e["type"] == "tool_call"]
            assert called["name"] == "time_get_current_time" and called["arguments"] == {"timezone": zone}
            [decided] = [e["payload"] for e in events if e["type"] == "policy_decision"]
            assert decided["verdict"] == "allow"
            [result] = [e["payload"] for e in events if e["type"] == "tool_result"]
            assert not result["is_error"], result
            answer = json.loads(result["content"])
            assert answer["timezone"] == zone and answer["datetime"]
            assert f'"timezone": "{zone}"' in str(task["result"])
        # Three runs, one server: the worker process keeps one session per MCP server.
        assert len(_time_servers(pool.pid)) == 1

        # ops-core as an MCP server, to the SDK's client: hand it work and follow it.
        headers = deployment.headers
        async with (
            create_mcp_http_client(headers=headers) as http,
            Client(streamable_http_client(f"{deployment.api_url}/mcp", http_client=http), cache=None) as mcp,
        ):
            submitted = await _call(mcp, "submit_task", goal="Call time_get_current_time for 'UTC'", agent="clock")
            waited = await _call(mcp, "wait_for_task", task_id=submitted["task"]["id"], timeout_seconds=120)
            assert waited["finished"] and waited["task"]["status"] == "completed", waited
            events = await _call(mcp, "task_events", task_id=submitted["task"]["id"])
            assert any(
                e["type"] == "tool_result" and '"timezone": "UTC"' in e["payload"]["content"] for e in events["items"]
            )
        assert len(_time_servers(pool.pid)) == 1

    servers = _time_servers(pool.pid)
    pool.stop()
    wait_for_sync(
        lambda: [p.pid for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
        lambda alive: alive == [],
        timeout=30,
        what="the time server to end with its worker",
    )
