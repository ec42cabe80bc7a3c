"""``opscore mcp``: ops-core's MCP tools over stdio, driven by the ``mcp`` SDK's stdio client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from ops_core.config import load_settings
from ops_core.db import migrate
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from tests.support.processes import OPSCORE, REPO_ROOT


@pytest.fixture
async def database(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A migrated SQLite database with a key for tenants acme and rival; the environment to reach it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'mcp.db'}"
    settings = load_settings(database_url=url, broker_url="memory://")
    await migrate.upgrade_async(settings)
    runtime = Runtime.open(settings)
    try:
        keys = {
            tenant: (await runtime.access.create_key(tenant=tenant, scopes=[Scope.TASKS_READ, Scope.TASKS_WRITE]))[1]
            for tenant in ("acme", "rival")
        }
    finally:
        await runtime.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCORE_")}
    env |= {"OPSCORE_DATABASE_URL": url, "OPSCORE_BROKER_URL": "memory://"}
    return env, keys


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    return {"error": text} if result.is_error else json.loads(text)


def opscore_mcp(env: dict[str, str], key: str) -> Client:
    params = StdioServerParameters(
        command=OPSCORE, args=["mcp"], env=env | {"OPSCORE_API_KEY": key}, cwd=str(REPO_ROOT)
    )
    return Client(stdio_client(params, errlog=sys.__stderr__), cache=None)  # type: ignore[arg-type]


async def test_opscore_mcp_over_stdio_acts_as_its_key(database: tuple[dict[str, str], dict[str, str]]) -> None:
    env, keys = database
    async with opscore_mcp(env, keys["acme"]) as acme:
        names = {t.name for t in (await acme.list_tools()).tools}
        assert names == {"submit_task", "get_task", "list_tasks", "cancel_task", "wait_for_task", "task_events"}
        submitted = await call(acme, "submit_task", goal="What is 6 * 7?")
        task_id = submitted["task"]["id"]
        assert submitted["created"] and submitted["task"]["tenant"] == "acme"
        assert submitted["task"]["status"] == "pending"  # no worker here
        assert [t["id"] for t in (await call(acme, "list_tasks"))["items"]] == [task_id]
        waited = await call(acme, "wait_for_task", task_id=task_id, timeout_seconds=0.5)
        assert waited["finished"] is False and waited["task"]["status"] == "pending"
        cancelled = await call(acme, "cancel_task", task_id=task_id)
        assert cancelled["status"] == "cancelled"
        events = await call(acme, "task_events", task_id=task_id)
        assert [e["payload"].get("to") for e in events["items"] if e["type"] == "status"][-1] == "cancelled"

    async with opscore_mcp(env, keys["rival"]) as rival:
        assert (await call(rival, "list_tasks"))["items"] == []
        assert "task_not_found" in (await call(rival, "get_task", task_id=task_id))["error"]


def test_opscore_mcp_refuses_a_bad_key_in_one_line(database: tuple[dict[str, str], dict[str, str]]) -> None:
    env, _ = database
    done = subprocess.run(
        [OPSCORE, "mcp"],
        env=env | {"OPSCORE_API_KEY": "opsk_wrong"},
        cwd=REPO_ROOT,
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode().strip() == "error: OPSCORE_API_KEY is not a valid, usable API key"
    assert done.stdout == b""
    missing = subprocess.run([OPSCORE, "mcp"], env=env, cwd=REPO_ROOT, input=b"", capture_output=True, timeout=60)
    assert missing.returncode == 2 and b"set OPSCORE_API_KEY" in missing.stderr
