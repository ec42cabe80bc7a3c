"""Workflows live: a diamond whose last step quotes both middle ones, and a workflow that survives a SIGKILL."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import pytest

from tests.e2e.stack import Stack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"


async def _workflow(stack: Stack, workflow_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/v1/workflows/{workflow_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _wait_ended(stack: Stack, workflow_id: str, timeout: float = 120) -> dict[str, Any]:
    return await wait_for(
        lambda: _workflow(stack, workflow_id),
        lambda w: w["status"] != "running",
        timeout=timeout,
        what=f"workflow {workflow_id} to end",
    )


async def _tasks_marked(stack: Stack, marker: str) -> list[dict[str, Any]]:
    listed = (await stack.client.get("/v1/tasks", params={"limit": 500})).json()["items"]
    return [task for task in listed if marker in task["goal"]]


async def test_a_diamond_fans_out_and_in_and_the_last_step_quotes_both_middle_ones(stack: Stack) -> None:
    marker = uuid.uuid4().hex[:8]
    body = {
        "idempotency_key": f"diamond-{marker}",
        "steps": [
            {"name": "a", "goal": f"research {marker}", "model": MODEL},
            {"name": "b", "goal": "expand: {{steps.a.result}}", "depends_on": ["a"], "model": MODEL},
            {"name": "c", "goal": "criticise: {{steps.a.result}}", "depends_on": ["a"], "model": MODEL},
            {
                "name": "d",
                "goal": "merge <{{steps.b.result}}> with <{{steps.c.result}}>",
                "depends_on": ["b", "c"],
                "model": MODEL,
            },
        ],
    }
    submitted = await stack.client.post("/v1/workflows", json=body)
    assert submitted.status_code == 202, submitted.text
    workflow_id = submitted.json()["id"]
    again = await stack.client.post("/v1/workflows", json=body)
    assert again.status_code == 200 and again.json()["id"] == workflow_id

    ended = await _wait_ended(stack, workflow_id)
    assert ended["status"] == "completed", ended
    steps = {step["name"]: step for step in ended["steps"]}
    assert {name: step["status"] for name, step in steps.items()} == dict.fromkeys("abcd", "completed")
    tasks = {name: await stack.task(step["task_id"]) for name, step in steps.items()}

    a, b, c, d = (tasks[name] for name in "abcd")
    assert marker in a["result"]
    assert b["goal"] == f"expand: {a['result']}" and c["goal"] == f"criticise: {a['result']}"
    # D's stored goal quotes B's and C's results, and D started only after both had finished.
    assert d["goal"] == f"merge <{b['result']}> with <{c['result']}>"
    assert b["result"] in d["goal"] and c["result"] in d["goal"]
    assert d["started_at"] >= max(b["finished_at"], c["finished_at"])
    assert min(b["started_at"], c["started_at"]) >= a["finished_at"]
    assert len(await _tasks_marked(stack, marker)) == 4, "one task per step"


async def test_a_workflow_survives_its_worker_killed_mid_step_and_starts_every_step_once(stack: Stack) -> None:
    marker = uuid.uuid4().hex[:8]
    # b: step 1 calls the calculator; its first step-2 model call stalls long enough to kill its worker in it.
    stalled_goal = f"[[tool_stall=30]] {marker} continue from {{{{steps.a.result}}}}"
    wrapped = "{{steps.b.status}}"
    body = {
        "steps": [
            {"name": "a", "goal": f"start {marker}", "model": MODEL},
            {"name": "b", "goal": stalled_goal, "depends_on": ["a"], "model": MODEL, "max_retries": 2},
            {"name": "c", "goal": f"wrap up {marker} after b {wrapped}", "depends_on": ["b"], "model": MODEL},
        ],
    }
    submitted = await stack.client.post("/v1/workflows", json=body)
    assert submitted.status_code == 202, submitted.text
    workflow_id = submitted.json()["id"]

    async def b_running() -> dict[str, Any] | None:
        step = {s["name"]: s for s in (await _workflow(stack, workflow_id))["steps"]}["b"]
        if step["task_id"] is None:
            return None
        events = await stack.events(step["task_id"])
        return step if any(e["type"] == "tool_result" for e in events) else None

    b = await wait_for(b_running, lambda found: found is not None, timeout=60, what="step b in its stalled step 2")
    assert b is not None

    async def holder() -> list[dict[str, Any]]:
        return [w for w in await stack.wait_workers(1) if b["task_id"] in w["current_task_ids"]]

    [worker] = await wait_for(holder, lambda found: len(found) == 1, timeout=30, what="b's worker")
    os.kill(worker["pid"], signal.SIGKILL)

    ended = await _wait_ended(stack, workflow_id, timeout=180)
    assert ended["status"] == "completed", ended
    tasks = {s["name"]: await stack.task(s["task_id"]) for s in ended["steps"]}
    assert tasks["b"]["attempts"] == 2, "b ran again on another worker after its worker died"
    assert tasks["a"]["attempts"] == 1 and tasks["c"]["attempts"] == 1
    assert tasks["c"]["goal"] == f"wrap up {marker} after b completed"
    assert len(await _tasks_marked(stack, marker)) == 3, "every step started once"
    # b's finished step 1 was not asked again: the resumed attempt went on from its checkpoint.
    b_text = tasks["b"]["goal"]
    assert stack.deployment.fake.calls[(b_text, 1)] == 1
