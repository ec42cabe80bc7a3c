"""Remote agents end to end: a real remote agent process (tests/support/remote_agent.py), which checks
ops-core's signatures with the ``standardwebhooks`` package and reports back to the signed callbacks.

The deployment's remote lease is short (8 s) so that a remote agent going silent is seen within the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from ops_core.signing import new_secret, signed_headers
from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import Deployment, Stack
from tests.support.processes import REPO_ROOT, free_port
from tests.support.waiting import wait_for, wait_for_sync

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SECRET = new_secret()
LEASE_SECONDS = 8


class AgentProcess:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = proc

    def received(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/received", timeout=10).json()["items"])

    async def wait_received(self, what: str, match: Any, timeout: float = 60) -> list[dict[str, Any]]:
        async def probe() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(timeout=10) as client:
                return list((await client.get(f"{self.url}/received")).json()["items"])

        return await wait_for(probe, lambda items: any(match(m) for m in items), timeout=timeout, what=what)


@pytest.fixture(scope="module")
def remote_deployment(deployments: DeploymentFactory) -> Deployment:
    return deployments(workers=2, env={"OPSCORE_REMOTE_LEASE_SECONDS": str(LEASE_SECONDS)})


@pytest.fixture(scope="module")
def remote_agent(remote_deployment: Deployment) -> Iterator[AgentProcess]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.remote_agent", "--port", str(port), "--secret", SECRET],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    agent = AgentProcess(port, proc)

    def probe() -> int:
        try:
            return httpx.get(f"{agent.url}/received", timeout=2).status_code
        except httpx.TransportError:
            return 0

    try:
        wait_for_sync(probe, lambda status: status == 200, timeout=30, what="the remote agent process to listen")
        body = {"name": "remote-echo", "url": f"{agent.url}/hook", "secret": SECRET, "description": "echoes remotely"}
        created = httpx.post(
            f"{remote_deployment.api_url}/v1/agents/remote", json=body, headers=remote_deployment.headers, timeout=30
        )
        assert created.status_code == 201, created.text
        yield agent
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def stack(remote_deployment: Deployment, remote_agent: AgentProcess) -> AsyncIterator[Stack]:
    async with remote_deployment.client() as client:
        yield Stack(remote_deployment, client)


def of_task(task_id: str, kind: str) -> Any:
    return lambda message: message.get("task_id") == task_id and message.get("type") == kind


async def test_the_agent_is_listed_and_a_task_completes_with_its_events_and_usage(
    stack: Stack, remote_agent: AgentProcess
) -> None:
    agents = (await stack.client.get("/v1/agents")).json()["items"]
    listed = {a["name"]: a for a in agents}
    assert listed["remote-echo"]["kind"] == "remote" and listed["default"]["kind"] == "local"

    task = await stack.submit(goal="say hello", agent="remote-echo")
    done = await stack.wait_status(task["id"], {"completed", "failed", "cancelled"})
    assert done["status"] == "completed", done
    assert done["result"] == {"answer": "remote: say hello"}
    assert done["usage"]["input_tokens"] == 11 and done["usage"]["output_tokens"] == 5
    types = [e["type"] for e in await stack.events(task["id"])]
    for kind in ("remote_delivered", "progress", "model_response", "final_answer"):
        assert kind in types, types
    assert types.index("remote_delivered") < types.index("final_answer") < len(types) - 1
    assert types[-1] == "status"
    # The agent verified ops-core's signature on the delivery (a failed check is recorded as rejected).
    received = remote_agent.received()
    assert any(of_task(task["id"], "task")(m) for m in received)
    assert not any("rejected" in m for m in received)


async def test_a_forged_callback_is_refused_and_changes_nothing_and_cancel_reaches_the_agent(
    stack: Stack, remote_agent: AgentProcess
) -> None:
    task = await stack.submit(goal="work until told [[hang]]", agent="remote-echo")
    await wait_for(
        lambda: stack.task(task["id"]),
        lambda t: str(t["worker_id"]).startswith("remote:"),
        timeout=60,
        what="the task handed to the remote agent",
    )
    await wait_for(
        lambda: stack.events(task["id"]),
        lambda events: any(e["type"] == "progress" for e in events),
        timeout=60,
        what="the remote agent's first event",
    )
    before = await stack.events(task["id"])

    forged = json.dumps({"attempt": 1, "status": "completed", "result": "forged"}).encode()
    headers = signed_headers(new_secret(), f"msg_{uuid.uuid4().hex}", forged)
    async with httpx.AsyncClient(base_url=stack.deployment.api_url, timeout=30) as anonymous:
        refused = await anonymous.post(f"/v1/remote/tasks/{task['id']}/result", content=forged, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "invalid_signature"
    still = await stack.task(task["id"])
    assert still["status"] == "running" and still["result"] is None
    after = await stack.events(task["id"])
    # Heartbeats add no events: whatever the log holds now, nothing of the forged callback is in it.
    assert after[: len(before)] == before and all(e["type"] != "final_answer" for e in after)

    cancelled = await stack.client.post(f"/v1/tasks/{task['id']}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    final = await stack.wait_status(task["id"], {"completed", "failed", "cancelled"})
    assert final["status"] == "cancelled", final
    await remote_agent.wait_received("the cancel webhook", of_task(task["id"], "cancel"))
    notes = [e["payload"] for e in await stack.events(task["id"]) if e["type"] == "remote_cancel"]
    assert notes and notes[0]["delivered"] is True and notes[0]["reason"] == "cancel requested"


async def test_a_remote_agent_that_never_answers_times_out(stack: Stack, remote_agent: AgentProcess) -> None:
    task = await stack.submit(goal="say nothing [[silent]]", agent="remote-echo", timeout_seconds=2, max_retries=3)
    final = await stack.wait_status(task["id"], {"completed", "failed", "cancelled"})
    assert final["status"] == "failed" and final["error"]["type"] == "timeout", final
    assert final["attempts"] == 1
    # The agent is told to stop.
    await remote_agent.wait_received("the timeout's cancel webhook", of_task(task["id"], "cancel"))


async def test_an_agent_that_goes_silent_loses_its_lease_and_the_task_is_retried(
    stack: Stack, remote_agent: AgentProcess
) -> None:
    task = await stack.submit(goal="drop it once [[silent-once]]", agent="remote-echo", max_retries=2)
    final = await stack.wait_status(task["id"], {"completed", "failed", "cancelled"}, timeout=90)
    assert final["status"] == "completed" and final["attempts"] == 2, final
    lost = [e for e in await stack.events(task["id"]) if e["type"] == "attempt_failed"]
    assert lost and lost[0]["payload"]["type"] == "remote_agent_lost"


async def test_a_failed_delivery_is_retried_by_the_lifecycle(stack: Stack, remote_agent: AgentProcess) -> None:
    # Four 503s: attempt 1's three tries fail, so the attempt fails retryably; attempt 2 gets through.
    task = await stack.submit(goal="flaky endpoint [[flaky=4]]", agent="remote-echo", max_retries=2)
    final = await stack.wait_status(task["id"], {"completed", "failed", "cancelled"}, timeout=90)
    assert final["status"] == "completed" and final["attempts"] == 2, final
    failed = [e for e in await stack.events(task["id"]) if e["type"] == "attempt_failed"]
    assert failed and failed[0]["payload"]["type"] == "remote_delivery_failed"
    deliveries = [m for m in remote_agent.received() if of_task(task["id"], "task")(m)]
    assert len(deliveries) == 5
    assert {m["attempt"] for m in deliveries} == {1, 2}
