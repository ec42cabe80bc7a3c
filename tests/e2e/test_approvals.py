"""Approvals live: twenty runs wait for a person without holding the workers, then end as decided."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import Stack
from tests.support.agents import APPROVAL_TIMEOUT_SECONDS
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MODEL = "openai:fake-model"
CONCURRENCY = 5
ENV = {
    "OPSCORE_AGENTS": "tests.support.agents",
    "PYTHONPATH": str(REPO_ROOT),
    "OPSCORE_WORKER_CONCURRENCY": str(CONCURRENCY),
}
APPROVE, EDIT, DENY, TIME_OUT = "approve", "edit", "deny", "time out"
# 20 runs that each need approval: what a person does with each.
PLAN = [APPROVE] * 5 + [EDIT] * 3 + [DENY] * 6 + [TIME_OUT] * 6


async def _approvals(stack: Stack, **params: str) -> list[dict[str, Any]]:
    response = await stack.client.get("/v1/approvals", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_twenty_runs_wait_without_holding_workers_and_end_as_decided(deployments: DeploymentFactory) -> None:
    deployment = deployments(workers=0, env=ENV)
    deployment.start_worker(processes=1)
    deployment.wait_workers(1)
    async with deployment.client() as client:
        stack = Stack(deployment, client)
        goals = [f"[[tool_stall=0]] approval {i} ({what})" for i, what in enumerate(PLAN)]
        ids = [
            (await stack.submit(goal=goal, agent="gated_briefly" if what == TIME_OUT else "gated", model=MODEL))["id"]
            for goal, what in zip(goals, PLAN, strict=True)
        ]

        # All twenty park, with one worker process of five slots: waiting holds no slot.
        pending = await wait_for(
            lambda: _approvals(stack, status="pending"),
            lambda items: len(items) == len(PLAN),
            timeout=60,
            what=f"{len(PLAN)} pending approvals\n{stack.logs()}",
        )
        assert {item["task_id"] for item in pending} == set(ids)
        assert [(await stack.task(task_id))["status"] for task_id in ids] == ["waiting"] * len(PLAN)
        [worker] = await stack.wait_workers(1)
        assert worker["current_task_ids"] == []
        others = [(await stack.submit(goal=f"[[delay=0.2]] meanwhile {i}", model=MODEL))["id"] for i in range(8)]
        for task_id in others:
            assert (await stack.wait_status(task_id, {"completed", "failed"}))["status"] == "completed"

        call_of = {item["task_id"]: item["call_id"] for item in pending}
        for task_id, what in zip(ids, PLAN, strict=True):
            body: dict[str, Any] = {"decision": "deny", "reason": "not this one"}
            if what == APPROVE:
                body = {"decision": "approve"}
            elif what == EDIT:
                body = {"decision": "approve", "arguments": {"expression": "2 + 2"}, "reason": "smaller"}
            if what != TIME_OUT:
                url = f"/v1/tasks/{task_id}/approvals/{call_of[task_id]}"
                decided = await client.post(url, json=body)
                assert decided.status_code == 200, decided.text

        ended = await asyncio.gather(
            *(
                stack.wait_status(task_id, {"completed", "failed", "cancelled"}, timeout=APPROVAL_TIMEOUT_SECONDS + 60)
                for task_id in ids
            )
        )
        assert [task["status"] for task in ended] == ["completed"] * len(PLAN), ended

        for task_id, goal, what in zip(ids, goals, PLAN, strict=True):
            events = await stack.events(task_id)
            [result] = [e["payload"] for e in events if e["type"] == "tool_result"]
            [decision] = [e["payload"] for e in events if e["type"] == "approval_decided"]
            expected = {APPROVE: "approved", EDIT: "approved", DENY: "denied", TIME_OUT: "timed_out"}[what]
            assert decision["decision"] == expected, (what, decision)
            if what == APPROVE:
                assert (result["content"], result["is_error"]) == ("42", False)
            elif what == EDIT:
                assert result["content"].endswith("\n4") and not result["is_error"], result
            elif what == DENY:
                assert result["is_error"] and "not this one" in result["content"], result
            else:
                assert result["is_error"] and "timed out" in result["content"], result
                assert decision["decided_by"] == "timeout"
            # No finished step paid twice: the model was asked once for each of the two steps.
            calls = deployment.fake.calls
            assert (calls[(goal, 1)], calls[(goal, 2)]) == (1, 1), (what, dict(calls))
        assert await _approvals(stack, status="pending") == []
