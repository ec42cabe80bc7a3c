"""Event streams live: a stream survives its API process dying and its worker dying, with no gap and no repeat."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from ops_core.api.routes.streams import LIVE_EVENT
from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import Deployment
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"
# Step 1 calls the calculator; the first step-2 model call stalls, long enough to kill its worker in it.
GOAL = "[[tool_stall=30]] stream across an API and a worker dying"


async def _read(http: httpx.AsyncClient, url: str, seen: list[dict[str, Any]], *, until: str | None = None) -> None:
    """Append the stream's stored events to ``seen`` until it ends, or until an event of type ``until`` arrives.

    Live text is left out: it carries no id of its own (an SSE client reports the last id it saw), it is never
    stored, and whether any arrives depends on how fast the model's chunks come.
    """
    headers = {"Last-Event-ID": str(seen[-1]["id"])} if seen else {}
    async with aconnect_sse(http, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200
        async for sent in source.aiter_sse():
            if sent.event == LIVE_EVENT:
                continue
            seen.append({"id": int(sent.id), "type": sent.event, "data": sent.json()})
            if sent.event == until:
                return


async def test_a_stream_resumes_on_another_api_across_a_worker_crash(deployments: DeploymentFactory) -> None:
    deployment = deployments(workers=2)
    second_api = deployment.start_extra_api()
    timeout = httpx.Timeout(30.0, read=60.0)
    async with (
        httpx.AsyncClient(base_url=deployment.api_url, headers=deployment.headers, timeout=timeout) as first,
        httpx.AsyncClient(base_url=second_api, headers=deployment.headers, timeout=timeout) as second,
    ):
        submitted = await first.post("/v1/tasks", json={"goal": GOAL, "model": MODEL})
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["id"]
        url = f"/v1/tasks/{task_id}/stream"
        seen: list[dict[str, Any]] = []

        # Live on the first API until step 1's tool result: the run is now stalled in step 2.
        await asyncio.wait_for(_read(first, url, seen, until="tool_result"), timeout=60)
        assert deployment.api is not None
        deployment.api.kill()

        # Kill the worker process that holds the run: after a lease, another attempt resumes after step 1.
        async def holder() -> list[dict[str, Any]]:
            workers = (await second.get("/v1/workers")).json()["items"]
            return [w for w in workers if task_id in w["current_task_ids"]]

        [worker] = await wait_for(holder, lambda found: len(found) == 1, timeout=30, what="the run's worker")
        os.kill(worker["pid"], signal.SIGKILL)

        # Resume on the second API with Last-Event-ID, to the end.
        await asyncio.wait_for(_read(second, url, seen), timeout=120)

        logged = (await second.get(f"/v1/tasks/{task_id}/events")).json()["items"]
    assert [e["id"] for e in seen] == [e["seq"] for e in logged], "every event, in order, each once"
    assert [e["data"] for e in seen] == logged
    assert seen[-1]["data"]["payload"]["to"] == "completed"
    assert {e["data"]["attempt"] for e in seen if e["type"] == "model_request"} == {1, 2}, "attempts told apart"
    requeued = [e for e in seen if e["type"] == "requeued"]
    assert requeued and requeued[0]["data"]["payload"]["error_type"] == "worker_lost"


async def test_a_tenants_status_stream_shows_its_own_tasks_live(deployment: Deployment) -> None:
    mine = deployment.create_key("streams-a", "tasks:read", "tasks:write")
    theirs = deployment.create_key("streams-b", "tasks:read", "tasks:write")
    timeout = httpx.Timeout(30.0, read=60.0)
    async with (
        httpx.AsyncClient(base_url=deployment.api_url, headers=_bearer(mine), timeout=timeout) as a,
        httpx.AsyncClient(base_url=deployment.api_url, headers=_bearer(theirs), timeout=timeout) as b,
    ):
        seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        opened = {"a": asyncio.Event(), "b": asyncio.Event()}

        async def follow(name: str, http: httpx.AsyncClient, until: int) -> None:
            async with aconnect_sse(http, "GET", "/v1/events/stream") as source:
                assert source.response.status_code == 200
                opened[name].set()
                async for sent in source.aiter_sse():
                    seen[name].append(sent.json())
                    if len(seen[name]) == until:
                        return

        # Tenant A's stream ends the test once A's task completed (three changes); B's must stay silent.
        followers = [asyncio.create_task(follow("a", a, 3)), asyncio.create_task(follow("b", b, 1))]
        await asyncio.wait_for(asyncio.gather(opened["a"].wait(), opened["b"].wait()), timeout=30)
        submitted = await a.post("/v1/tasks", json={"goal": "[[delay=0.3]] watched", "model": MODEL})
        assert submitted.status_code == 202, submitted.text
        await asyncio.wait_for(followers[0], timeout=60)
        followers[1].cancel()

    task_id = submitted.json()["id"]
    assert [(c["task_id"], c["payload"]["to"]) for c in seen["a"]] == [
        (task_id, "pending"),
        (task_id, "running"),
        (task_id, "completed"),
    ]
    assert seen["b"] == [], "another tenant's stream shows nothing of it"


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_live_text_arrives_while_the_model_is_still_answering(deployment: Deployment) -> None:
    goal = "[[stream_stall=8]] a slow answer, streamed"
    timeout = httpx.Timeout(30.0, read=60.0)
    async with httpx.AsyncClient(base_url=deployment.api_url, headers=deployment.headers, timeout=timeout) as http:
        submitted = await http.post("/v1/tasks", json={"goal": goal, "model": MODEL})
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["id"]
        seen: list[tuple[str, Any]] = []
        async with aconnect_sse(http, "GET", f"/v1/tasks/{task_id}/stream") as source:
            async for sent in source.aiter_sse():
                seen.append((sent.event, sent.json()))

    kinds = [kind for kind, _ in seen]
    first_live = kinds.index("live_text")
    assert first_live < kinds.index("model_response"), "the text arrived while the model was still answering"
    answer = next(data for kind, data in seen if kind == "model_response")["payload"]["text"]
    live = "".join(data["text"] for kind, data in seen if kind == "live_text")
    assert live and answer.startswith(live), (live, answer)
    assert answer == f"done: {goal}"
