"""The live suite: the real API and two real worker processes, PostgreSQL and RabbitMQ, driven over HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.stack import TERMINAL, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SLOW_MODEL = "openai:fake-slow"


def _transitions(events: list[dict[str, object]]) -> list[str]:
    return [str(e["payload"]["to"]) for e in events if e["type"] == "status"]  # type: ignore[index]


async def test_success_runs_the_agent_and_records_every_step(stack: Stack) -> None:
    task = await stack.submit(goal="What is 6 * 7?")
    assert task["status"] == "pending"

    done = await stack.wait_status(task["id"], TERMINAL)

    assert done["status"] == "completed", done
    assert "42" in str(done["result"])
    assert done["attempts"] == 1
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] > 0
    assert done["started_at"] and done["finished_at"]

    events = await stack.events(task["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    for expected in ("model_request", "model_response", "tool_call", "tool_result", "final_answer"):
        assert expected in types, types
    assert types.index("tool_call") < types.index("tool_result") < types.index("final_answer")
    assert _transitions(events) == ["pending", "running", "completed"]
    responses = [e for e in events if e["type"] == "model_response"]
    assert all(e["payload"]["usage"]["input_tokens"] > 0 for e in responses)


async def test_agent_error_ends_failed_with_a_typed_error(stack: Stack) -> None:
    # A permanent provider error (HTTP 400 from the model API) must fail at once, not be retried.
    task = await stack.submit(goal="[[status=400]] refuse this", model="openai:fake-model")

    done = await stack.wait_status(task["id"], TERMINAL)

    assert done["status"] == "failed", done
    assert done["error"]["type"] == "model_error"
    assert "injected status 400" in done["error"]["message"]
    assert done["attempts"] == 1


async def test_two_hundred_tasks_across_two_workers_each_complete_once(stack: Stack) -> None:
    submitted = await asyncio.gather(*(stack.submit(goal=f"task number {i}") for i in range(200)))
    ids = [t["id"] for t in submitted]
    assert len(set(ids)) == 200

    async def statuses() -> Counter[str]:
        tasks = await asyncio.gather(*(stack.task(i) for i in ids))
        return Counter(t["status"] for t in tasks)

    from tests.support.waiting import wait_for

    final = await wait_for(statuses, lambda c: c["completed"] == 200, timeout=120, what="200 tasks completed")
    assert final == Counter({"completed": 200})

    all_events = await asyncio.gather(*(stack.events(i) for i in ids))
    workers_seen: set[str] = set()
    for events in all_events:
        assert _transitions(events).count("completed") == 1
        assert _transitions(events).count("running") == 1
        running = next(e for e in events if e["type"] == "status" and e["payload"]["to"] == "running")
        workers_seen.add(running["payload"]["worker_id"])
    assert len(workers_seen) == 2, workers_seen


async def test_idempotent_resubmit_returns_the_same_task(stack: Stack) -> None:
    first = await stack.submit(goal="What is 1 + 1?", idempotency_key="e2e-idem-1")
    again = await stack.submit(expect=200, goal="What is 1 + 1?", idempotency_key="e2e-idem-1")

    assert again["id"] == first["id"]
    done = await stack.wait_status(first["id"], TERMINAL)
    assert done["status"] == "completed"
    listed = (await stack.client.get("/v1/tasks", params={"limit": 500})).json()["items"]
    assert [t["id"] for t in listed].count(first["id"]) == 1


async def test_cancel_running_task_stops_it_cooperatively(stack: Stack) -> None:
    task = await stack.submit(goal="[[delay=120]] think for a long time", model=SLOW_MODEL)
    await stack.wait_status(task["id"], {"running"})

    response = await stack.client.post(f"/v1/tasks/{task['id']}/cancel")
    assert response.status_code == 200, response.text

    done = await stack.wait_status(task["id"], TERMINAL, timeout=15)
    assert done["status"] == "cancelled"
    assert _transitions(await stack.events(task["id"]))[-1] == "cancelled"
    assert (await stack.client.post(f"/v1/tasks/{task['id']}/cancel")).status_code == 409


async def test_cancel_pending_task_takes_effect_at_once(stack: Stack) -> None:
    # Fill every run slot of both workers (2 × 8) so the next task has to wait in the queue.
    blockers = await asyncio.gather(
        *(stack.submit(goal=f"[[delay=120]] blocker {i}", model=SLOW_MODEL) for i in range(16))
    )
    for blocker in blockers:
        await stack.wait_status(blocker["id"], {"running"})
    waiting = await stack.submit(goal="What is 3 + 4?")

    response = await stack.client.post(f"/v1/tasks/{waiting['id']}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    for blocker in blockers:
        await stack.client.post(f"/v1/tasks/{blocker['id']}/cancel")
    for blocker in blockers:
        assert (await stack.wait_status(blocker["id"], TERMINAL, timeout=20))["status"] == "cancelled"
    # Once slots free up, the cancelled task's message is delivered and must not run.
    probe = await stack.submit(goal="What is 5 + 5?")
    assert (await stack.wait_status(probe["id"], TERMINAL))["status"] == "completed"
    still = await stack.task(waiting["id"])
    assert still["status"] == "cancelled" and still["attempts"] == 0


async def test_workers_endpoint_lists_both_workers(stack: Stack) -> None:
    workers = await stack.wait_workers(2)
    assert len(workers) == 2
    assert all(w["last_heartbeat"] for w in workers)


async def test_bad_input_is_a_clear_4xx(stack: Stack) -> None:
    bad_agent = await stack.client.post("/v1/tasks", json={"goal": "x", "agent": "nope"})
    assert bad_agent.status_code == 422 and "nope" in bad_agent.json()["error"]["message"]
    bad_model = await stack.client.post("/v1/tasks", json={"goal": "x", "model": "acme:gpt"})
    assert bad_model.status_code == 422
    assert (await stack.client.get("/v1/tasks/not-a-uuid")).status_code == 422
    assert (await stack.client.get("/v1/tasks/00000000-0000-0000-0000-000000000000")).status_code == 404
