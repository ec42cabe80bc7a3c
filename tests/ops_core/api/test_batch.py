"""``POST /v1/tasks/batch`` against the real store (SQLite) and the in-process broker; PostgreSQL's statement is
covered by tests/ops_core/db/test_create_many.py."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from tests.support.waiting import wait_for


async def batch(client: httpx.AsyncClient, *tasks: Any) -> httpx.Response:
    return await client.post("/v1/tasks/batch", json={"tasks": list(tasks)})


async def test_each_item_is_created_or_rejected_on_its_own(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await batch(
        client,
        {"goal": "first", "priority": 5, "input": {"n": 1}},
        {"goal": "   "},
        {"goal": "x", "agent": "nobody"},
        {"goal": "x", "model": "bogus:model"},
        {"goal": "x", "nonsense": 1},
        {"goal": "last", "concurrency_key": "k", "timeout_seconds": 30},
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["existing"], body["rejected"]) == (2, 0, 4)
    items = body["items"]
    assert [item["index"] for item in items] == list(range(6))
    assert [item["outcome"] for item in items] == ["created", "rejected", "rejected", "rejected", "rejected", "created"]
    assert items[0]["task"]["priority"] == 5 and items[0]["task"]["input"] == {"n": 1}
    assert items[5]["task"]["concurrency_limit"] == 1 and items[5]["task"]["timeout_seconds"] == 30
    errors = [(item["error"]["code"], item["error"]["message"]) for item in items[1:5]]
    assert errors[0][0] == "validation_error" and "'tasks.1.goal'" in errors[0][1]
    assert errors[1][0] == "unknown_agent" and "'nobody'" in errors[1][1]
    assert errors[2][0] == "invalid_model"
    assert errors[3][0] == "validation_error" and "'tasks.4.nonsense'" in errors[3][1]
    assert all(item["task"] is None for item in items[1:5])
    # Only the created tasks exist, each published once, and marked published by the flush.
    listed = (await client.get("/v1/tasks")).json()["items"]
    assert sorted(task["goal"] for task in listed) == ["first", "last"]
    assert runtime.broker.queues[runtime.settings.queue_name].qsize() == 2
    for item in (items[0], items[5]):
        await wait_for(
            lambda item=item: runtime.store.get(uuid.UUID(item["task"]["id"]), tenant=EVERY_TENANT),
            lambda stored: stored.published_at is not None,
            timeout=10,
            what="the task marked published",
        )


async def test_idempotency_keys_answer_existing_or_conflict_per_item(client: httpx.AsyncClient) -> None:
    first = (await client.post("/v1/tasks", json={"goal": "a", "idempotency_key": "k1"})).json()

    items = (
        await batch(
            client,
            {"goal": "a", "idempotency_key": "k1"},
            {"goal": "changed", "idempotency_key": "k1"},
            {"goal": "b", "idempotency_key": "k2"},
            {"goal": "b", "idempotency_key": "k2"},
        )
    ).json()["items"]

    assert [item["outcome"] for item in items] == ["existing", "rejected", "created", "existing"]
    assert items[0]["task"]["id"] == first["id"]
    assert items[1]["error"]["code"] == "idempotency_conflict" and "goal" in items[1]["error"]["message"]
    assert items[2]["task"]["id"] == items[3]["task"]["id"]
    again = (await batch(client, {"goal": "b", "idempotency_key": "k2"})).json()["items"]
    assert again[0]["outcome"] == "existing" and again[0]["task"]["id"] == items[2]["task"]["id"]


async def test_a_wrong_body_shape_is_422_for_the_whole_request(client: httpx.AsyncClient) -> None:
    for body in ({}, {"tasks": []}, {"tasks": [{"goal": "x"}] * 1001}, {"tasks": ["x"]}, {"tasks": {}}, []):
        response = await client.post("/v1/tasks/batch", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    assert (await client.get("/v1/tasks")).json()["items"] == []


async def test_a_thousand_tasks_go_in_one_call(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await batch(client, *({"goal": f"task {i}"} for i in range(1000)))

    assert response.status_code == 200
    assert response.json()["created"] == 1000
    assert runtime.broker.queues[runtime.settings.queue_name].qsize() == 1000


async def test_the_rate_counts_each_task_and_refuses_only_the_excess(app: FastAPI, runtime: Runtime) -> None:
    await runtime.access.set_quotas("a", {"submissions_per_second": 3.0})
    _, secret = await runtime.access.create_key(tenant="a", scopes=[Scope.TASKS_WRITE, Scope.TASKS_READ])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers={"Authorization": f"Bearer {secret}"}
    ) as a:
        items = (
            await batch(a, {"goal": "bad agent", "agent": "nobody"}, *({"goal": f"t{i}"} for i in range(5)))
        ).json()["items"]

        # The burst is 3: three created, the other two refused with when to come back; the invalid item costs nothing.
        assert [item["outcome"] for item in items] == [
            "rejected",
            "created",
            "created",
            "created",
            "rejected",
            "rejected",
        ]
        assert items[0]["error"]["code"] == "unknown_agent" and items[0]["retry_after"] is None
        assert {item["error"]["code"] for item in items[4:]} == {"rate_limited"}
        # The next one is earned a third of a second after the three taken (burst 3 at 3 per second).
        assert [item["retry_after"] for item in items[4:]] == [pytest.approx(1 / 3, abs=0.01)] * 2
        listed = (await a.get("/v1/tasks")).json()["items"]
        assert sorted(task["goal"] for task in listed) == ["t0", "t1", "t2"]


async def test_a_reader_may_not_submit_a_batch(app: FastAPI, runtime: Runtime) -> None:
    _, secret = await runtime.access.create_key(tenant="a", scopes=[Scope.TASKS_READ])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers={"Authorization": f"Bearer {secret}"}
    ) as reader:
        assert (await batch(reader, {"goal": "x"})).status_code == 403


async def test_batch_is_not_a_task_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/tasks/batch")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_delayed_items_wait_for_the_relay_and_callback_urls_are_checked_per_item(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    items = (
        await batch(
            client,
            {"goal": "later", "delay_seconds": 3600},
            {"goal": "now"},
            {"goal": "hook", "callback_url": "http://127.0.0.1:9/hook"},
        )
    ).json()["items"]

    assert [item["outcome"] for item in items] == ["created", "created", "rejected"]
    assert items[0]["task"]["run_after"] is not None and items[1]["task"]["run_after"] is None
    assert items[2]["error"]["code"] == "invalid_callback_url"
    # Only the task due now is published; the delayed one stays in the database until due.
    assert runtime.broker.queues[runtime.settings.queue_name].qsize() == 1


async def test_a_session_turn_is_refused_in_a_batch_and_the_others_go_in(client: httpx.AsyncClient) -> None:
    session = await client.post("/v1/sessions", json={"agent": "default"})
    assert session.status_code == 201, session.text

    response = await batch(client, {"goal": "turn", "session_id": session.json()["id"]}, {"goal": "plain"})

    assert response.status_code == 200, response.text
    first, second = response.json()["items"]
    assert first["outcome"] == "rejected" and first["error"]["code"] == "invalid_request"
    assert "session_id" in first["error"]["message"]
    assert second["outcome"] == "created"
