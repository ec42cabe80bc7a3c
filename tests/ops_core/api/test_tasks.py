"""The /v1/tasks endpoints against the real store (SQLite) and the in-process broker."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from ops_core.domain import ErrorType
from ops_core.lifecycle import TaskStatus
from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from tests.support.waiting import wait_for


async def submit(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/tasks", json={"goal": "say hi", **body})


async def test_submit_returns_202_with_the_pending_task(client: httpx.AsyncClient) -> None:
    response = await submit(client, input={"name": "ada"}, priority=7, max_retries=5, timeout_seconds=30)

    assert response.status_code == 202
    task = response.json()
    assert uuid.UUID(task["id"])
    assert task["status"] == "pending"
    assert task["goal"] == "say hi"
    assert task["agent"] == "default"
    assert task["input"] == {"name": "ada"}
    assert task["model"] == "offline:default"
    assert task["priority"] == 7
    assert task["max_retries"] == 5
    assert task["timeout_seconds"] == 30
    assert task["attempts"] == 0
    assert task["error"] is None
    assert task["result"] is None
    assert task["usage"] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "reused_tokens": 0}
    assert task["finished_at"] is None


async def test_submit_applies_the_settings_defaults(client: httpx.AsyncClient) -> None:
    task = (await submit(client)).json()

    assert task["max_retries"] == 2
    assert task["timeout_seconds"] == 120
    assert task["priority"] == 0


async def test_submit_publishes_the_task_to_the_broker(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task = (await submit(client)).json()

    queue = runtime.broker.queues[runtime.settings.queue_name]  # StubBroker: an in-process queue
    assert queue.qsize() == 1
    # published_at is written by the batched flush, shortly after the response.
    await wait_for(
        lambda: runtime.store.get(uuid.UUID(task["id"]), tenant=EVERY_TENANT),
        lambda stored: stored.published_at is not None,
        timeout=5,
        what="the task marked published",
    )


async def test_repeated_idempotency_key_returns_200_and_the_same_task(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    request = {"idempotency_key": "order-42", "input": {"n": 1, "tags": ["a"]}, "priority": 3}
    first = await submit(client, **request)
    again = await submit(client, **request)

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == first.json()
    page = await runtime.store.list(tenant=EVERY_TENANT, limit=10)
    assert len(page.items) == 1


async def test_repeat_that_spells_out_the_defaults_is_the_same_request(client: httpx.AsyncClient) -> None:
    first = await submit(client, idempotency_key="order-7")
    # The fixture's settings: default agent and model, 2 retries, 120 s.
    explicit = {"agent": "default", "model": "offline:default", "max_retries": 2, "timeout_seconds": 120}
    again = await submit(client, idempotency_key="order-7", **explicit)

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"goal": "something else"}, "goal"),
        ({"input": {"n": 2}}, "input"),
        ({"input": {"n": True}}, "input"),
        ({"priority": 4}, "priority"),
        ({"max_retries": 7}, "max_retries"),
        ({"timeout_seconds": 60}, "timeout_seconds"),
        ({"schedule_to_start_seconds": 30}, "schedule_to_start_seconds"),
        ({"model": "offline:other"}, "model"),
        ({"concurrency_key": "A"}, "concurrency_key"),
    ],
)
async def test_idempotency_key_reused_with_a_different_request_is_409(
    client: httpx.AsyncClient, runtime: Runtime, change: dict[str, Any], field: str
) -> None:
    first = await submit(client, idempotency_key="order-42", input={"n": 1})
    again = await submit(client, **{"idempotency_key": "order-42", "input": {"n": 1}, **change})

    assert first.status_code == 202
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert "order-42" in error["message"]
    assert field in error["message"]
    assert first.json()["id"] in error["message"]
    page = await runtime.store.list(tenant=EVERY_TENANT, limit=10)
    assert len(page.items) == 1


async def test_get_returns_the_task(client: httpx.AsyncClient) -> None:
    created = (await submit(client)).json()

    response = await client.get(f"/v1/tasks/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    task_id = uuid.uuid4()
    response = await client.get(f"/v1/tasks/{task_id}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"
    assert str(task_id) in response.json()["error"]["message"]


async def test_list_is_newest_first_and_paginates(client: httpx.AsyncClient) -> None:
    ids = [(await submit(client, goal=f"goal {n}")).json()["id"] for n in range(5)]

    first = (await client.get("/v1/tasks", params={"limit": 3})).json()
    second = (await client.get("/v1/tasks", params={"limit": 3, "cursor": first["next_cursor"]})).json()

    assert [t["id"] for t in first["items"]] == ids[::-1][:3]
    assert [t["id"] for t in second["items"]] == ids[::-1][3:]
    assert second["next_cursor"] is None


async def test_list_filters_by_status_and_agent(client: httpx.AsyncClient) -> None:
    kept = (await submit(client)).json()
    cancelled = (await submit(client)).json()
    await client.post(f"/v1/tasks/{cancelled['id']}/cancel")

    pending = (await client.get("/v1/tasks", params={"status": "pending"})).json()
    by_agent = (await client.get("/v1/tasks", params={"agent": "nobody"})).json()

    assert [t["id"] for t in pending["items"]] == [kept["id"]]
    assert by_agent == {"items": [], "next_cursor": None}


async def test_cancel_pending_task_cancels_it_at_once(client: httpx.AsyncClient) -> None:
    task = (await submit(client)).json()

    response = await client.post(f"/v1/tasks/{task['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None


async def test_cancel_running_task_flags_it_and_leaves_it_running(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task = (await submit(client)).json()
    claim = await runtime.store.claim(uuid.UUID(task["id"]), "worker-1")
    assert claim is not None

    response = await client.post(f"/v1/tasks/{task['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True
    assert response.json()["worker_id"] == "worker-1"


async def test_cancel_finished_task_is_409(client: httpx.AsyncClient) -> None:
    task = (await submit(client)).json()
    await client.post(f"/v1/tasks/{task['id']}/cancel")

    response = await client.post(f"/v1/tasks/{task['id']}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "task_finished"


async def test_retry_cancelled_task_makes_it_pending_again(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task = (await submit(client)).json()
    await client.post(f"/v1/tasks/{task['id']}/cancel")

    response = await client.post(f"/v1/tasks/{task['id']}/retry")

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert response.json()["finished_at"] is None
    # Published twice in all: on submission and on retry.
    assert runtime.broker.queues[runtime.settings.queue_name].qsize() == 2


async def test_retry_pending_task_is_409(client: httpx.AsyncClient) -> None:
    task = (await submit(client)).json()

    response = await client.post(f"/v1/tasks/{task['id']}/retry")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize("action", ["cancel", "retry"])
async def test_actions_on_unknown_task_are_404(client: httpx.AsyncClient, action: str) -> None:
    response = await client.post(f"/v1/tasks/{uuid.uuid4()}/{action}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"


async def test_events_are_listed_in_seq_order(client: httpx.AsyncClient) -> None:
    task = (await submit(client)).json()
    await client.post(f"/v1/tasks/{task['id']}/cancel")

    events = (await client.get(f"/v1/tasks/{task['id']}/events")).json()["items"]
    later = (await client.get(f"/v1/tasks/{task['id']}/events", params={"after_seq": events[0]["seq"]})).json()

    seqs = [e["seq"] for e in events]
    assert len(seqs) >= 2
    assert seqs == sorted(seqs)
    assert all(e["task_id"] == task["id"] for e in events)
    assert [e["seq"] for e in later["items"]] == seqs[1:]


async def test_events_of_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/tasks/{uuid.uuid4()}/events")

    assert response.status_code == 404


async def test_failed_task_shows_its_error(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task = (await submit(client, max_retries=0)).json()
    task_id = uuid.UUID(task["id"])
    claim = await runtime.store.claim(task_id, "worker-1")
    assert claim is not None
    await runtime.store.fail(
        task_id,
        claim.attempt,
        error_type=ErrorType.TOOL_ERROR,
        error_message="the tool broke",
        input_tokens=10,
        output_tokens=5,
        reused_tokens=2,
    )

    shown = (await client.get(f"/v1/tasks/{task_id}")).json()

    assert shown["status"] == TaskStatus.FAILED
    assert shown["error"] == {"type": "tool_error", "message": "the tool broke"}
    assert shown["attempts"] == 1
    assert shown["usage"] == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "reused_tokens": 2}
    assert shown["finished_at"] is not None
    retried = await client.post(f"/v1/tasks/{task_id}/retry")
    assert retried.status_code == 202
    assert retried.json()["status"] == "pending"
    assert retried.json()["error"] is None


async def test_completed_task_shows_its_result(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = uuid.UUID((await submit(client)).json()["id"])
    claim = await runtime.store.claim(task_id, "worker-1")
    assert claim is not None
    await runtime.store.complete(
        task_id, claim.attempt, result={"answer": 42}, input_tokens=3, output_tokens=4, reused_tokens=0
    )

    shown = (await client.get(f"/v1/tasks/{task_id}")).json()

    assert shown["status"] == "completed"
    assert shown["result"] == {"answer": 42}
    assert shown["usage"]["total_tokens"] == 7
    assert (await client.post(f"/v1/tasks/{task_id}/cancel")).status_code == 409
    assert (await client.post(f"/v1/tasks/{task_id}/retry")).status_code == 409


async def test_workers_lists_live_workers_with_their_tasks(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await runtime.store.register_worker("worker-1", "host-a", 1234, 10)
    await runtime.store.register_worker("worker-2", "host-b", 99, 5)
    task_id = uuid.UUID((await submit(client)).json()["id"])
    assert await runtime.store.claim(task_id, "worker-1") is not None

    response = await client.get("/v1/workers")

    assert response.status_code == 200
    workers = {w["id"]: w for w in response.json()["items"]}
    assert set(workers) == {"worker-1", "worker-2"}
    assert workers["worker-1"]["current_task_ids"] == [str(task_id)]
    assert workers["worker-1"]["host"] == "host-a"
    assert workers["worker-1"]["pid"] == 1234
    assert workers["worker-1"]["last_heartbeat"]
    assert workers["worker-2"]["current_task_ids"] == []


async def test_submit_stores_the_concurrency_key_and_limit(client: httpx.AsyncClient) -> None:
    task = (await submit(client, concurrency_key="repo:org/name", concurrency_limit=5)).json()
    assert (task["concurrency_key"], task["concurrency_limit"]) == ("repo:org/name", 5)
    assert (await client.get(f"/v1/tasks/{task['id']}")).json()["concurrency_limit"] == 5
    listed = (await client.get("/v1/tasks")).json()["items"]
    assert (listed[0]["concurrency_key"], listed[0]["concurrency_limit"]) == ("repo:org/name", 5)


async def test_a_concurrency_key_alone_runs_one_at_a_time(client: httpx.AsyncClient) -> None:
    keyed = (await submit(client, concurrency_key="customer-42")).json()
    plain = (await submit(client)).json()

    assert (keyed["concurrency_key"], keyed["concurrency_limit"]) == ("customer-42", 1)
    assert (plain["concurrency_key"], plain["concurrency_limit"]) == (None, None)


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"concurrency_limit": 2}, "concurrency_limit", "needs a concurrency_key"),
        ({"concurrency_key": "a", "concurrency_limit": 0}, "concurrency_limit", "greater than or equal to 1"),
        ({"concurrency_key": "a", "concurrency_limit": 10_001}, "concurrency_limit", "less than or equal to 10000"),
        ({"concurrency_key": "a", "concurrency_limit": "two"}, "concurrency_limit", "integer"),
        ({"concurrency_key": ""}, "concurrency_key", "at least 1 character"),
        ({"concurrency_key": "k" * 201}, "concurrency_key", "at most 200 characters"),
        ({"concurrency_key": "customer 42"}, "concurrency_key", "only letters, digits"),
        ({"concurrency_key": "naïve"}, "concurrency_key", "only letters, digits"),
        ({"concurrency_key": "a\nb"}, "concurrency_key", "only letters, digits"),
        ({"concurrency_key": "a\n"}, "concurrency_key", "only letters, digits"),
        ({"concurrency_key": 42}, "concurrency_key", "string"),
    ],
)
async def test_a_bad_concurrency_key_or_limit_is_422(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any], field: str, why: str
) -> None:
    response = await submit(client, **body)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert f"'{field}'" in error["message"] and why in error["message"], error["message"]
    assert (await runtime.store.list(tenant=EVERY_TENANT, limit=10)).items == []


async def test_the_longest_concurrency_key_and_every_allowed_character_are_accepted(client: httpx.AsyncClient) -> None:
    for key in ("k" * 200, "AZaz09_-.:/@+="):
        response = await submit(client, concurrency_key=key, concurrency_limit=10_000)
        assert response.status_code == 202, response.text
        assert response.json()["concurrency_key"] == key


@pytest.mark.parametrize(
    "field", ["max_retries", "timeout_seconds", "priority", "schedule_to_start_seconds", "concurrency_limit"]
)
async def test_a_boolean_is_not_taken_for_a_number(client: httpx.AsyncClient, field: str) -> None:
    body = {"goal": "hi", field: True, **({"concurrency_key": "k"} if field == "concurrency_limit" else {})}
    response = await client.post("/v1/tasks", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"] and "not true or false" in response.json()["error"]["message"]
