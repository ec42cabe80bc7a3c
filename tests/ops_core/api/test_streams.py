"""``GET /v1/tasks/{id}/stream``: the recorded events, then live ones, resumable, ending at the terminal event."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ops_core.db.models import NewEvent, NewTask
from ops_core.keys import Scope
from ops_core.lifecycle import TaskStatus
from ops_core.live import LiveText
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT


def parse(body: str) -> list[dict[str, Any]]:
    """The SSE events of a finished response body: id, event and the JSON data, comments skipped."""
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields and "id" in fields:  # live text (no id) is read by the tests that look for it
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


async def until(done: Callable[[], bool], timeout: float = 30) -> None:
    """Wait for state the app reaches on its own loop, with a deadline."""
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.01)


async def new_task(runtime: Runtime, tenant: str = DEFAULT_TENANT) -> uuid.UUID:
    new = NewTask(tenant=tenant, agent="default", goal="hi", model="offline:default", max_retries=1, timeout_seconds=60)
    task, _ = await runtime.store.create(new)
    return task.id


async def finish(runtime: Runtime, task_id: uuid.UUID) -> None:
    """Claim and complete the task as a worker would: claim, two appended events, completion."""
    claim = await runtime.store.claim(task_id, "w1")
    assert claim is not None
    await runtime.store.append_events(task_id, claim.attempt, [NewEvent("model_request", {"step": 1})])
    await runtime.store.complete(
        task_id,
        claim.attempt,
        result="done",
        input_tokens=1,
        output_tokens=1,
        reused_tokens=0,
        events=[NewEvent("final_answer", {"output": "done"})],
    )


async def test_a_finished_tasks_stream_is_its_log_then_ends(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = await new_task(runtime)
    await finish(runtime, task_id)

    response = await client.get(f"/v1/tasks/{task_id}/stream")

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = parse(response.text)
    logged = (await client.get(f"/v1/tasks/{task_id}/events")).json()["items"]
    assert [e["data"] for e in events] == logged
    assert [e["id"] for e in events] == [e["seq"] for e in logged] == list(range(1, len(logged) + 1))
    assert [e["event"] for e in events] == [e["type"] for e in logged]
    assert events[-1]["data"]["payload"]["to"] == "completed"


async def test_a_stream_resumes_after_the_last_event_id(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = await new_task(runtime)
    await finish(runtime, task_id)

    by_header = parse((await client.get(f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": "2"})).text)
    by_query = parse((await client.get(f"/v1/tasks/{task_id}/stream", params={"after_seq": 2})).text)
    past_the_end = await client.get(f"/v1/tasks/{task_id}/stream", params={"after_seq": 99})

    assert [e["id"] for e in by_header] == [e["id"] for e in by_query] == [3, 4, 5]
    assert past_the_end.status_code == 200 and parse(past_the_end.text) == []


async def test_new_events_reach_an_open_stream_live(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = await new_task(runtime)
    streaming = asyncio.create_task(client.get(f"/v1/tasks/{task_id}/stream"))
    streams = client._transport.app.state.streams  # type: ignore[attr-defined]
    await until(lambda: streams.subscribers > 0)

    await finish(runtime, task_id)
    response = await asyncio.wait_for(streaming, timeout=30)

    assert [e["id"] for e in parse(response.text)] == [1, 2, 3, 4, 5]
    assert streams.subscribers == 0, "an ended stream lets go of its watch"


async def test_stream_errors_are_clear(client: httpx.AsyncClient, app: FastAPI, runtime: Runtime) -> None:
    task_id = await new_task(runtime)
    unknown = await client.get(f"/v1/tasks/{uuid.uuid4()}/stream")
    assert unknown.status_code == 404
    for bad in ("abc", "-1", "1.5", "99999999999"):
        response = await client.get(f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": bad})
        assert response.status_code == 422, (bad, response.text)
        assert "Last-Event-ID" in response.text

    for params in ({"status": "bogus"}, {"agent": ""}, {"after_id": -1}, {"after_id": 2**63}):
        response = await client.get("/v1/events/stream", params=params)
        assert response.status_code == 422, (params, response.text)
    bad_resume = await client.get("/v1/events/stream", headers={"Last-Event-ID": "x"})
    assert bad_resume.status_code == 422

    app.state.streams._max = 0
    full = await client.get(f"/v1/tasks/{task_id}/stream")
    assert full.status_code == 503 and full.json()["error"]["code"] == "too_many_streams"


async def test_another_tenants_task_cannot_be_streamed(app: FastAPI, runtime: Runtime) -> None:
    task_id = await new_task(runtime, tenant="acme")
    _, secret = await runtime.access.create_key(tenant="other", scopes=[Scope.TASKS_READ])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.get(f"/v1/tasks/{task_id}/stream", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 404


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_a_stream_setting_out_of_range_fails_naming_it(seconds: float) -> None:
    from ops_core.config import load_settings
    from ops_core.errors import ConfigError

    with pytest.raises(ConfigError, match="OPSCORE_STREAM_POLL_SECONDS"):
        load_settings(stream_poll_seconds=seconds)


async def test_a_tenants_stream_carries_its_status_changes_live(app: FastAPI, runtime: Runtime) -> None:
    # The route's generator, driven directly: over HTTP this stream never ends (the e2e tier reads it live).
    from ops_core.api.routes.streams import _changes

    start = await runtime.store.last_event_id()
    changes = _changes(runtime.store, app.state.streams, DEFAULT_TENANT, start, None, TaskStatus.COMPLETED)
    first = asyncio.create_task(anext(changes))
    await new_task(runtime, tenant="someone-else")
    task_id = await new_task(runtime)
    await finish(runtime, task_id)

    sent = await asyncio.wait_for(first, timeout=30)
    data = json.loads(sent.data)
    assert (sent.event, data["task_id"], data["payload"]["to"]) == ("status", str(task_id), "completed")
    assert int(sent.id) == data["id"] > start
    await changes.aclose()
    assert app.state.streams.subscribers == 0


async def test_live_text_reaches_a_stream_until_its_step_is_stored(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = await new_task(runtime)
    claim = await runtime.store.claim(task_id, "w1")
    assert claim is not None
    streaming = asyncio.create_task(client.get(f"/v1/tasks/{task_id}/stream"))
    streams = client._transport.app.state.streams  # type: ignore[attr-defined]
    await until(lambda: streams.listening)

    await runtime.live.publish([LiveText(task_id, claim.attempt, 1, "Hello, wor")])
    await until(lambda: not any(w.live for w in streams.watches))  # until the stream has sent it
    await runtime.store.append_events(
        task_id, claim.attempt, [NewEvent("model_response", {"step": 1, "text": "Hello, world"})]
    )
    await runtime.live.publish([LiveText(task_id, claim.attempt, 1, "ld")])  # late: its step is stored
    await runtime.store.complete(
        task_id, claim.attempt, result="Hello, world", input_tokens=1, output_tokens=1, reused_tokens=0
    )
    response = (await asyncio.wait_for(streaming, timeout=30)).text

    blocks = [b for b in response.replace("\r\n", "\n").split("\n\n") if "event: live_text" in b]
    assert len(blocks) == 1 and "id:" not in blocks[0], "live text has no id: a reconnect never resumes from it"
    data = json.loads(blocks[0].split("data: ", 1)[1])
    assert data == {"attempt": claim.attempt, "step": 1, "text": "Hello, wor"}
    kinds = [e["event"] for e in parse(response)]
    assert kinds == ["status", "status", "model_response", "status"], "stored events as before"
