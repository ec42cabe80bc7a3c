"""``/v1/sessions`` and tasks submitted with ``session_id``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from ops_core.config import Settings, load_settings
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.api.conftest import MAX_BODY_BYTES
from tests.ops_core.db.helpers import USAGE


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The test agents give a session a second agent to disagree with.
    return load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        broker_url="memory://",
        max_body_bytes=MAX_BODY_BYTES,
        agents="tests.support.agents",
    )


async def new_session(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json={"agent": "sleepy", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def submit(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/tasks", json={"goal": "hello", **body})


async def test_a_session_is_created_read_listed_and_closed(client: httpx.AsyncClient) -> None:
    first = await new_session(client, metadata={"user": "ada"})
    assert (first["agent"], first["metadata"], first["status"], first["closed_at"]) == (
        "sleepy",
        {"user": "ada"},
        "open",
        None,
    )
    second = await new_session(client)

    read = await client.get(f"/v1/sessions/{first['id']}")
    assert read.status_code == 200
    assert read.json()["turns"] == [] and read.json()["turn_count"] == 0

    page = (await client.get("/v1/sessions", params={"limit": 1})).json()
    assert [s["id"] for s in page["items"]] == [second["id"]]
    older = (await client.get("/v1/sessions", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [s["id"] for s in older["items"]] == [first["id"]] and older["next_cursor"] is None

    closed = await client.post(f"/v1/sessions/{first['id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed" and closed.json()["closed_at"]
    again = await client.post(f"/v1/sessions/{first['id']}/close")
    assert again.status_code == 200 and again.json()["closed_at"] == closed.json()["closed_at"]
    open_ones = (await client.get("/v1/sessions", params={"status": "open"})).json()["items"]
    assert [s["id"] for s in open_ones] == [second["id"]]


async def test_a_task_in_a_session_takes_its_agent_and_shows_as_a_turn(client: httpx.AsyncClient) -> None:
    session = await new_session(client)
    response = await submit(client, session_id=session["id"], input={"n": 1})
    assert response.status_code == 202, response.text
    task = response.json()
    assert (task["agent"], task["session_id"]) == ("sleepy", session["id"])
    # The session's internal key is not the client's business.
    assert (task["concurrency_key"], task["concurrency_limit"]) == (None, None)
    assert (await submit(client, session_id=session["id"], agent="sleepy")).status_code == 202

    detail = (await client.get(f"/v1/sessions/{session['id']}")).json()
    assert detail["turn_count"] == 2
    turn = detail["turns"][0]
    assert (turn["task_id"], turn["goal"], turn["input"], turn["status"], turn["in_conversation"]) == (
        task["id"],
        "hello",
        {"n": 1},
        "pending",
        False,
    )
    newest = (await client.get(f"/v1/sessions/{session['id']}", params={"turns": 1})).json()
    assert len(newest["turns"]) == 1 and newest["turn_count"] == 2
    assert (await client.get(f"/v1/tasks/{task['id']}")).json()["session_id"] == session["id"]


async def test_a_completed_turn_is_in_the_conversation(client: httpx.AsyncClient, runtime: Runtime) -> None:
    session = await new_session(client)
    task = (await submit(client, session_id=session["id"])).json()
    claim = await runtime.store.claim(UUID(task["id"]), "w1")
    assert claim is not None
    assert await runtime.store.complete(claim.task.id, claim.attempt, result="hi there", **USAGE)
    (turn,) = (await client.get(f"/v1/sessions/{session['id']}")).json()["turns"]
    assert (turn["status"], turn["result"], turn["in_conversation"]) == ("completed", "hi there", True)


async def test_refusals_are_clear(client: httpx.AsyncClient) -> None:
    session = await new_session(client)
    other_agent = await submit(client, session_id=session["id"], agent="default")
    assert other_agent.status_code == 422
    assert "talks to agent 'sleepy', not 'default'" in other_agent.json()["error"]["message"]

    keyed = await submit(client, session_id=session["id"], concurrency_key="mine")
    assert keyed.status_code == 422 and "concurrency_key" in keyed.json()["error"]["message"]

    # No client key can spell a session's internal key.
    spelled = await submit(client, concurrency_key=f"#session/{session['id'].replace('-', '')}")
    assert spelled.status_code == 422 and "concurrency_key" in spelled.json()["error"]["message"]

    unknown = await submit(client, session_id="00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "session_not_found"
    assert (await client.get("/v1/sessions/00000000-0000-4000-8000-000000000000")).status_code == 404
    assert (await client.post("/v1/sessions/00000000-0000-4000-8000-000000000000/close")).status_code == 404
    assert (await client.get("/v1/sessions/not-a-uuid")).status_code == 422

    no_agent = await client.post("/v1/sessions", json={"agent": "nobody"})
    assert no_agent.status_code == 422 and no_agent.json()["error"]["code"] == "unknown_agent"
    extra = await client.post("/v1/sessions", json={"agent": "default", "colour": "red"})
    assert extra.status_code == 422
    bad_metadata = await client.post("/v1/sessions", json={"metadata": {"x": "\u0000"}})
    assert bad_metadata.status_code == 422

    await client.post(f"/v1/sessions/{session['id']}/close")
    closed = await submit(client, session_id=session["id"])
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "session_closed"
    assert "is closed" in closed.json()["error"]["message"]


async def test_an_earlier_turn_is_not_retried_once_the_session_moved_on(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    session = await new_session(client)
    first = (await submit(client, session_id=session["id"])).json()
    claim = await runtime.store.claim(UUID(first["id"]), "w1")
    assert claim is not None
    assert await runtime.store.fail(claim.task.id, claim.attempt, error_type="agent_error", error_message="x", **USAGE)

    # While it is the latest turn, a hand retry is allowed.
    assert (await client.post(f"/v1/tasks/{first['id']}/retry")).status_code == 202
    await runtime.store.request_cancel(UUID(first["id"]), tenant=EVERY_TENANT)
    await submit(client, session_id=session["id"])
    refused = await client.post(f"/v1/tasks/{first['id']}/retry")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_moved_on"


async def test_another_tenant_neither_sees_nor_joins_a_session(app: FastAPI, runtime: Runtime) -> None:
    _, acme = await runtime.access.create_key(tenant="acme", scopes=[Scope.TASKS_READ, Scope.TASKS_WRITE])
    _, other = await runtime.access.create_key(tenant="other", scopes=[Scope.TASKS_READ, Scope.TASKS_WRITE])
    _, reader = await runtime.access.create_key(tenant="acme", scopes=[Scope.TASKS_READ])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        mine = {"Authorization": f"Bearer {acme}"}
        theirs = {"Authorization": f"Bearer {other}"}
        session = (await http.post("/v1/sessions", json={}, headers=mine)).json()
        assert session["tenant"] == "acme"
        assert (await http.get(f"/v1/sessions/{session['id']}", headers=theirs)).status_code == 404
        assert (await http.get("/v1/sessions", headers=theirs)).json()["items"] == []
        joined = await http.post("/v1/tasks", json={"goal": "hi", "session_id": session["id"]}, headers=theirs)
        assert joined.status_code == 404
        assert (await http.post(f"/v1/sessions/{session['id']}/close", headers=theirs)).status_code == 404
        read_only = {"Authorization": f"Bearer {reader}"}
        assert (await http.get(f"/v1/sessions/{session['id']}", headers=read_only)).status_code == 200
        assert (await http.post("/v1/sessions", json={}, headers=read_only)).status_code == 403
        assert (await http.post(f"/v1/sessions/{session['id']}/close", headers=read_only)).status_code == 403


async def test_a_repeated_submission_with_an_idempotency_key_returns_the_same_turn(
    client: httpx.AsyncClient,
) -> None:
    session = await new_session(client)
    body = {"session_id": session["id"], "idempotency_key": "turn-1"}
    first = await submit(client, **body)
    again = await submit(client, **body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    other_session = await new_session(client)
    moved = await submit(client, session_id=other_session["id"], idempotency_key="turn-1")
    assert moved.status_code == 409 and "session_id" in moved.json()["error"]["message"]
    # A repeat that arrives after the session was closed still answers with the first task.
    await client.post(f"/v1/sessions/{session['id']}/close")
    late = await submit(client, **body)
    assert late.status_code == 200 and late.json()["id"] == first.json()["id"]
    assert (await submit(client, session_id=session["id"], idempotency_key="turn-2")).status_code == 409


async def test_a_schedule_cannot_submit_a_sessions_turns(client: httpx.AsyncClient) -> None:
    session = await new_session(client)
    template = {"goal": "good morning", "agent": "sleepy", "session_id": session["id"]}
    response = await client.post("/v1/schedules", json={"cron": "0 9 * * *", "template": template})
    assert response.status_code == 422 and "session_id" in response.json()["error"]["message"], response.text
