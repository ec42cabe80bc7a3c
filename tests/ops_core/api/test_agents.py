"""``/v1/agents`` and remote agents' registrations and signed callbacks, on the real runtime (SQLite)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from ops_core.config import load_settings
from ops_core.db.remote import remote_worker_id
from ops_core.errors import ConfigError
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.signing import new_secret, signed_headers
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT

SECRET = new_secret()


async def register(client: httpx.AsyncClient, name: str = "echo", **more: Any) -> httpx.Response:
    body = {"name": name, "url": "http://127.0.0.1:1/hook", "secret": SECRET, "description": "echoes", **more}
    return await client.post("/v1/agents/remote", json=body)


async def test_local_agents_are_listed_with_tool_schemas_and_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/agents")
    assert response.status_code == 200, response.text
    agents = {agent["name"]: agent for agent in response.json()["items"]}
    default = agents["default"]
    assert default["kind"] == "local"
    assert default["model"]
    tools = {tool["name"]: tool for tool in default["tools"]}
    assert "calculator" in tools
    assert tools["calculator"]["parameters"]["type"] == "object"
    assert tools["calculator"]["parameters"]["properties"]
    assert set(default["policy"]) == {"allow", "deny", "require_approval", "constrained", "approval_timeout"}
    assert default["mcp_servers"] == []


async def test_a_remote_agent_is_registered_listed_and_deleted_and_its_secret_never_shown(
    client: httpx.AsyncClient,
) -> None:
    created = await register(client, model="offline:default")
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "echo" and created.json()["tenant"] == DEFAULT_TENANT
    listed = await client.get("/v1/agents/remote")
    everything = (await client.get("/v1/agents")).json()["items"]
    for text in (created.text, listed.text, json.dumps(everything)):
        assert SECRET not in text and SECRET.removeprefix("whsec_") not in text
    assert [a["name"] for a in listed.json()["items"]] == ["echo"]
    remote = next(agent for agent in everything if agent["name"] == "echo")
    assert remote["kind"] == "remote" and remote["url"] == "http://127.0.0.1:1/hook" and remote["policy"] is None
    assert remote["model"] == "offline:default"

    again = await register(client)
    assert again.status_code == 409 and again.json()["error"]["code"] == "agent_exists"
    assert (await client.delete("/v1/agents/remote/echo")).status_code == 204
    gone = await client.delete("/v1/agents/remote/echo")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "agent_not_found"
    assert (await client.get("/v1/agents/remote")).json()["items"] == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": "default"}, "local agent"),
        ({"secret": "plain-text"}, "whsec_"),
        ({"secret": "whsec_c2hvcnQ="}, "at least 24"),
        ({"url": "ftp://example.com/x"}, "http"),
        ({"name": "has space"}, "name"),
    ],
)
async def test_a_bad_registration_is_refused_with_a_reason(
    client: httpx.AsyncClient, change: dict[str, str], words: str
) -> None:
    response = await register(client, **change)
    assert response.status_code in (409, 422), response.text
    assert words in response.json()["error"]["message"]


async def test_a_secret_without_base64_padding_is_accepted(client: httpx.AsyncClient) -> None:
    response = await register(client, secret=new_secret().rstrip("="))
    assert response.status_code == 201, response.text


def test_a_callback_url_that_is_not_http_fails_at_startup_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="OPSCORE_REMOTE_CALLBACK_URL"):
        load_settings(remote_callback_url="api.example.com")


async def test_only_an_admin_registers_remote_agents(app: Any, runtime: Runtime) -> None:
    _, secret = await runtime.access.create_key(tenant=DEFAULT_TENANT, scopes=[Scope.TASKS_WRITE, Scope.TASKS_READ])
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as writer:
        assert (await register(writer)).status_code == 403
        assert (await writer.get("/v1/agents")).status_code == 200


async def test_a_task_may_name_the_tenants_remote_agent_and_no_other_tenants(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await register(client, tenant="other")).status_code == 201
    refused = await client.post("/v1/tasks", json={"goal": "hi", "agent": "echo"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_agent"
    assert (await register(client)).status_code == 201
    accepted = await client.post("/v1/tasks", json={"goal": "hi", "agent": "echo"})
    assert accepted.status_code == 202, accepted.text


# ---- signed callbacks ------------------------------------------------------------------------------


async def held_task(client: httpx.AsyncClient, runtime: Runtime) -> uuid.UUID:
    """A task of the remote agent 'echo', claimed and handed over as a worker would: attempt 1, running."""
    assert (await register(client)).status_code == 201
    submitted = await client.post("/v1/tasks", json={"goal": "hi", "agent": "echo"})
    task_id = uuid.UUID(submitted.json()["id"])
    claim = await runtime.store.claim(task_id, "worker-a")
    assert claim is not None and claim.attempt == 1
    lease = datetime.now(UTC) + timedelta(minutes=5)
    assert await runtime.remote_agents.hand_over(task_id, 1, agent="echo", lease_until=lease, events=[])
    return task_id


def signed(body: dict[str, Any], *, secret: str = SECRET, msg_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, signed_headers(secret, msg_id or f"msg_{uuid.uuid4().hex}", raw)


async def test_callbacks_record_events_and_complete_the_task_with_its_usage(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, runtime: Runtime
) -> None:
    task_id = await held_task(client, runtime)
    assert (await runtime.store.get(task_id, tenant=EVERY_TENANT)).worker_id == remote_worker_id("echo")
    body, headers = signed({"attempt": 1, "events": [{"type": "progress", "payload": {"done": 1}}]})
    # No bearer key: the signature is the callback's authentication.
    response = await anonymous.post(f"/v1/remote/tasks/{task_id}/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    result = {"attempt": 1, "status": "completed", "result": {"answer": 42}, "usage": {"input_tokens": 7}}
    body, headers = signed(result)
    response = await anonymous.post(f"/v1/remote/tasks/{task_id}/result", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["task_status"] == "completed", response.text
    task = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert task["result"] == {"answer": 42}
    assert task["usage"]["input_tokens"] == 7
    types = [e["type"] for e in (await client.get(f"/v1/tasks/{task_id}/events")).json()["items"]]
    assert "progress" in types and types[-1] == "status"


async def test_a_forged_or_replayed_callback_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, runtime: Runtime
) -> None:
    task_id = await held_task(client, runtime)
    before = (await client.get(f"/v1/tasks/{task_id}/events")).json()["items"]
    done = {"attempt": 1, "status": "completed", "result": "forged"}
    url = f"/v1/remote/tasks/{task_id}/result"

    forged, headers = signed(done, secret=new_secret())
    wrong_body = json.dumps({**done, "result": "other"}).encode()
    _, good_headers = signed(done)
    stale = signed_headers(SECRET, "msg_old", forged, now=datetime.now(UTC) - timedelta(minutes=10))
    attempts = [
        (forged, headers),  # another secret
        (wrong_body, good_headers),  # a body the signature is not for
        (forged, {"content-type": "application/json"}),  # no signature at all
        (forged, {**good_headers, "webhook-signature": "v1,not-base64!"}),  # malformed
        (json.dumps(done).encode(), stale),  # outside the timestamp tolerance
    ]
    for body, sent in attempts:
        response = await anonymous.post(url, content=body, headers=sent)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_signature"
    # An unknown task answers the same 401: existence does not leak.
    body, sent = signed(done)
    assert (
        await anonymous.post(f"/v1/remote/tasks/{uuid.uuid4()}/result", content=body, headers=sent)
    ).status_code == 401

    heartbeat, sent = signed({"attempt": 1, "events": [{"type": "progress", "payload": {}}]})
    first = await anonymous.post(f"/v1/remote/tasks/{task_id}/events", content=heartbeat, headers=sent)
    assert first.status_code == 200, first.text
    replay = await anonymous.post(f"/v1/remote/tasks/{task_id}/events", content=heartbeat, headers=sent)
    assert replay.status_code == 401 and "replay" in replay.json()["error"]["message"]

    task = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert task["status"] == "running" and task["result"] is None
    after = (await client.get(f"/v1/tasks/{task_id}/events")).json()["items"]
    assert len(after) == len(before) + 1  # only the one genuine event


async def test_an_empty_events_callback_is_a_heartbeat_that_extends_the_lease(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, runtime: Runtime
) -> None:
    task_id = await held_task(client, runtime)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await runtime.remote_agents.extend_lease(task_id, 1, soon)
    body, headers = signed({"attempt": 1, "events": []})
    response = await anonymous.post(f"/v1/remote/tasks/{task_id}/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [held] = [run for run in await runtime.remote_agents.held() if run.task_id == task_id]
    lease = runtime.settings.remote_lease_seconds
    assert held.lease_until > datetime.now(UTC) + timedelta(seconds=lease - 60)


async def test_a_callback_for_an_attempt_that_moved_on_changes_nothing(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, runtime: Runtime
) -> None:
    task_id = await held_task(client, runtime)
    body, headers = signed({"attempt": 2, "status": "completed", "result": "late"})
    response = await anonymous.post(f"/v1/remote/tasks/{task_id}/result", content=body, headers=headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "attempt_superseded"
    assert (await client.get(f"/v1/tasks/{task_id}")).json()["status"] == "running"


async def test_a_retryable_failure_goes_back_to_pending_and_a_final_one_fails(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, runtime: Runtime
) -> None:
    task_id = await held_task(client, runtime)
    failure = {"attempt": 1, "status": "failed", "error": {"message": "upstream busy", "retryable": True}}
    body, headers = signed(failure)
    response = await anonymous.post(f"/v1/remote/tasks/{task_id}/result", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["task_status"] == "pending", response.text

    claim = await runtime.store.claim(task_id, "worker-b")
    assert claim is not None and claim.attempt == 2
    body, headers = signed({"attempt": 2, "status": "failed", "error": {"message": "no such thing"}})
    response = await anonymous.post(f"/v1/remote/tasks/{task_id}/result", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["task_status"] == "failed", response.text
    task = (await client.get(f"/v1/tasks/{task_id}")).json()
    assert task["error"]["type"] == "agent_error" and "no such thing" in task["error"]["message"]


async def test_a_callback_body_that_is_signed_but_invalid_gets_422(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, runtime: Runtime
) -> None:
    task_id = await held_task(client, runtime)
    for bad in (
        {"attempt": 1, "events": [{"type": "status", "payload": {}}]},  # ops-core's own event type
        {"attempt": 1, "events": [{"type": "live_text", "payload": {}}]},  # the streams' unstored kind
        {"attempt": 1, "status": "failed"},  # no error
        {"attempt": 0, "status": "completed"},
    ):
        path = "events" if "events" in bad else "result"
        body, headers = signed(bad)
        response = await anonymous.post(f"/v1/remote/tasks/{task_id}/{path}", content=body, headers=headers)
        assert response.status_code == 422, response.text
    assert (await client.get(f"/v1/tasks/{task_id}")).json()["status"] == "running"


def test_ops_core_signatures_verify_with_the_standardwebhooks_package() -> None:
    body = b'{"type":"task"}'
    headers = signed_headers(SECRET, "msg_1", body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "task"}


def test_a_local_agents_mcp_servers_are_listed_by_name_transport_and_prefix() -> None:
    from agentkit import AgentDefinition
    from agentkit.mcp import McpServer
    from ops_core.api.routes.agents import _local

    definition = AgentDefinition(
        name="clock",
        instructions="Tells the time.",
        mcp_servers=[
            McpServer.stdio("time", "python", ["-m", "mcp_server_time"], prefix="time"),
            McpServer.http("search", "http://127.0.0.1:1/mcp"),
        ],
    )

    listed = _local(definition, "offline:default").model_dump()["mcp_servers"]

    assert listed == [
        {"name": "time", "transport": "stdio", "prefix": "time"},
        {"name": "search", "transport": "http", "prefix": None},
    ]
