"""Completion webhooks in the API: callback_url on submit (SSRF refused with 422), the signing
secret (who may read and rotate it), and a task's deliveries with their attempts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from ops_core.db.rules import utcnow
from ops_core.db.webhooks import Outcome
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT
from ops_core.worker.webhooks import render_task

PUBLIC = "http://93.184.216.34/hooks/opscore"


async def key(runtime: Runtime, *scopes: Scope, tenant: str = DEFAULT_TENANT) -> dict[str, str]:
    _, secret = await runtime.access.create_key(tenant=tenant, scopes=list(scopes), name="t")
    return {"Authorization": f"Bearer {secret}"}


def client_for(app: FastAPI, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:8080/hook", "may not reach 127.0.0.1"),
        ("http://[::1]/hook", "may not reach ::1"),
        ("http://169.254.169.254/latest/meta-data/", "may not reach 169.254.169.254"),
        ("http://10.0.0.5/hook", "may not reach 10.0.0.5"),
        ("ftp://93.184.216.34/hook", "must be http or https"),
        ("http://user:secret@93.184.216.34/", "must not carry credentials"),
    ],
)
async def test_unsafe_callbacks_are_refused_at_submission(
    client: httpx.AsyncClient, runtime: Runtime, url: str, says: str
) -> None:
    answer = await client.post("/v1/tasks", json={"goal": "hi", "callback_url": url})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_callback_url"
    assert says in answer.json()["error"]["message"]
    assert (await runtime.store.list(tenant=EVERY_TENANT)).items == [], "nothing was stored"


async def test_a_public_callback_is_stored_and_shown(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/tasks", json={"goal": "hi", "callback_url": PUBLIC, "idempotency_key": "k1"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["callback_url"] == PUBLIC
    task_id = answer.json()["id"]
    assert (await client.get(f"/v1/tasks/{task_id}")).json()["callback_url"] == PUBLIC
    listed = (await client.get("/v1/tasks")).json()["items"]
    assert listed[0]["callback_url"] == PUBLIC
    # The callback is part of the request an idempotency key names.
    other = PUBLIC.replace("opscore", "other")
    repeat = await client.post("/v1/tasks", json={"goal": "hi", "callback_url": other, "idempotency_key": "k1"})
    assert repeat.status_code == 409 and "callback_url" in repeat.json()["error"]["message"]
    without = await client.post("/v1/tasks", json={"goal": "hi"})
    assert without.json()["callback_url"] is None


async def test_allowed_hosts_let_a_local_receiver_through(
    app: FastAPI, runtime: Runtime, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.tasks, "_allowed_callback_hosts", frozenset({"127.0.0.1"}))
    answer = await client.post("/v1/tasks", json={"goal": "hi", "callback_url": "http://127.0.0.1:9/in"})
    assert answer.status_code == 202, answer.text
    refused = await client.post("/v1/tasks", json={"goal": "hi", "callback_url": "http://10.0.0.1/in"})
    assert refused.status_code == 422


async def test_the_secret_is_the_tenants_and_rotates(app: FastAPI, runtime: Runtime) -> None:
    async with client_for(app, await key(runtime, Scope.WEBHOOKS, tenant="acme")) as acme:
        first = await acme.get("/v1/webhooks/secret")
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["tenant"] == "acme" and body["secret"].startswith("whsec_")
        assert body["rotated_at"] is None and body["previous_valid_until"] is None
        assert (await acme.get("/v1/webhooks/secret")).json()["secret"] == body["secret"]

        rotated = await acme.post("/v1/webhooks/secret")
        assert rotated.status_code == 200
        assert rotated.json()["secret"] != body["secret"] and rotated.json()["previous_valid_until"] is not None
        assert (await acme.get("/v1/webhooks/secret")).json()["secret"] == rotated.json()["secret"]

        other = await acme.get("/v1/webhooks/secret", params={"tenant": "globex"})
        assert other.status_code == 403

    async with client_for(app, await key(runtime, Scope.TASKS_READ, Scope.TASKS_WRITE, tenant="acme")) as writer:
        denied = await writer.get("/v1/webhooks/secret")
        assert denied.status_code == 403 and "webhooks scope" in denied.json()["error"]["message"]
        assert (await writer.post("/v1/webhooks/secret")).status_code == 403

    async with client_for(app, await key(runtime, Scope.ADMIN)) as admin:
        theirs = await admin.get("/v1/webhooks/secret", params={"tenant": "acme"})
        assert theirs.json()["secret"] == rotated.json()["secret"]
        assert (await admin.get("/v1/webhooks/secret", params={"tenant": "Not A Tenant"})).status_code == 422

    async with client_for(app, {}) as anonymous:
        assert (await anonymous.get("/v1/webhooks/secret")).status_code == 401


async def test_a_tasks_deliveries_and_attempts_are_visible(app: FastAPI, runtime: Runtime) -> None:
    acme = await key(runtime, Scope.TASKS_READ, Scope.TASKS_WRITE, tenant="acme")
    async with client_for(app, acme) as http:
        task_id = (await http.post("/v1/tasks", json={"goal": "hi", "callback_url": PUBLIC})).json()["id"]
        assert (await http.get(f"/v1/tasks/{task_id}/webhooks")).json() == {"items": []}

        claim = await runtime.store.claim(uuid.UUID(task_id), "w1")
        assert claim is not None
        usage = {"input_tokens": 1, "output_tokens": 1, "reused_tokens": 0}
        assert await runtime.store.complete(claim.task.id, claim.attempt, result="done", **usage)
        assert await runtime.webhooks.enqueue_finished_tasks(render_task) == 1
        [claimed] = await runtime.webhooks.claim(limit=10, lease=timedelta(minutes=1))
        failed = Outcome(
            started_at=utcnow(), duration_ms=12.5, status_code=503, error="HTTP 503", retry_at=claimed.next_attempt_at
        )
        assert await runtime.webhooks.record(claimed, failed)

        listed = await http.get(f"/v1/tasks/{task_id}/webhooks")
        assert listed.status_code == 200, listed.text
        [delivery] = listed.json()["items"]
        assert delivery["webhook_id"] == f"msg_{uuid.UUID(delivery['id']).hex}"
        assert (delivery["subject_type"], delivery["subject_id"]) == ("task", task_id)
        assert (delivery["event_type"], delivery["status"], delivery["attempts"]) == ("task.completed", "pending", 1)
        assert delivery["url"] == PUBLIC and delivery["next_attempt_at"] is not None
        assert delivery["payload"] == (await http.get(f"/v1/tasks/{task_id}")).json()
        assert delivery["history"] == [
            {
                "attempt": 1,
                "started_at": delivery["history"][0]["started_at"],
                "duration_ms": 12.5,
                "status_code": 503,
                "error": "HTTP 503",
            }
        ]
        by_query = await http.get("/v1/webhooks/deliveries", params={"task_id": task_id})
        assert by_query.json() == listed.json()
        assert len((await http.get("/v1/webhooks/deliveries", params={"status": "pending"})).json()["items"]) == 1
        assert (await http.get("/v1/webhooks/deliveries", params={"status": "delivered"})).json()["items"] == []
        assert (await http.get("/v1/webhooks/deliveries", params={"status": "nope"})).status_code == 422

    async with client_for(app, await key(runtime, Scope.TASKS_READ, tenant="globex")) as other:
        missing = await other.get(f"/v1/tasks/{task_id}/webhooks")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "task_not_found"
        assert (await other.get("/v1/webhooks/deliveries", params={"task_id": task_id})).json() == {"items": []}
