"""The Python SDK against a real deployment: a stream that outlives its API process, and a batch from the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from ops_core.client import AsyncClient, TaskEvent
from ops_core.lifecycle import TaskStatus
from tests.e2e.stack import Deployment
from tests.support.processes import OPSCORE

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"
# Step 1 calls the calculator; the first step-2 model call stalls: the API is killed and restarted meanwhile.
GOAL = "[[tool_stall=5]] a stream across an API restart"


class CountingTransport(httpx.AsyncHTTPTransport):
    """Remembers the Last-Event-ID of every stream request: how often, and from where, the SDK reconnected."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed_from: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            self.resumed_from.append(int(request.headers["last-event-id"]))
        return await super().handle_async_request(request)


async def test_the_sdk_stream_resumes_across_an_api_restart_with_no_gap_and_no_repeat(deployment: Deployment) -> None:
    transport = CountingTransport()
    key = deployment.env["OPSCORE_API_KEY"]
    # An API restart under load takes seconds: the stream keeps reconnecting for up to two minutes.
    async with AsyncClient(deployment.api_url, api_key=key, transport=transport, stream_give_up=120) as api:
        task = await api.submit(GOAL, model=MODEL)
        received: list[TaskEvent] = []
        restarted: asyncio.Task[None] | None = None

        async def restart() -> None:
            assert deployment.api is not None
            await asyncio.to_thread(deployment.api.kill)  # SIGKILL, and reaped: the port is free
            deployment.start_api()  # the same port
            await asyncio.to_thread(deployment.wait_ready, 90)

        async def follow() -> None:
            nonlocal restarted
            async for event in api.stream(task.id):
                if isinstance(event, TaskEvent):
                    received.append(event)
                if event.type == "tool_result" and restarted is None:
                    # Step 2 is stalled in the model: kill the API under the open stream, start it again.
                    restarted = asyncio.create_task(restart())

        await asyncio.wait_for(follow(), timeout=240)
        assert restarted is not None
        await asyncio.wait_for(restarted, timeout=120)

        logged = await api.events(task.id)
        final = await api.get(task.id)

    assert [e.seq for e in received] == list(range(1, len(logged) + 1)), "every event once, in order"
    assert received == logged
    assert final.status is TaskStatus.COMPLETED and received[-1].payload["to"] == "completed"
    tool_result = next(e.seq for e in received if e.type == "tool_result")
    assert len(transport.resumed_from) >= 2 and transport.resumed_from[0] == 0
    assert transport.resumed_from[1] >= tool_result, "resumed after what it had, not from the start"


async def test_the_cli_submits_a_file_as_one_batch_and_the_sdk_waits_for_each(
    deployment: Deployment, tmp_path: Path
) -> None:
    lines = [json.dumps({"goal": f"batch task {i}", "model": MODEL, "idempotency_key": f"file-{i}"}) for i in range(50)]
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("\n".join(lines) + "\n")

    made = subprocess.run(
        [OPSCORE, "submit", "--file", str(tasks_file), "--json"],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert (result["created"], result["rejected"]) == (50, 0)

    again = subprocess.run(
        [OPSCORE, "submit", "--file", str(tasks_file), "--json"],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(again.stdout)["existing"] == 50, "the same file again creates nothing"

    async with AsyncClient(deployment.api_url, api_key=deployment.env["OPSCORE_API_KEY"]) as api:
        ended = await asyncio.gather(*(api.wait(item["task"]["id"], timeout=120) for item in result["items"]))
    assert {task.status for task in ended} == {TaskStatus.COMPLETED}
    assert sorted(str(task.result) for task in ended) == sorted(f"done: batch task {i}" for i in range(50))
