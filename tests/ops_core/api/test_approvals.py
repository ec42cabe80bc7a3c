"""``/v1/approvals`` and deciding a waiting call: listing, approve, deny, edited arguments, errors, tenants."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from ops_core.db.approvals import NewApproval
from ops_core.db.models import NewTask
from ops_core.db.rules import utcnow
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT


async def waiting_task(runtime: Runtime, *call_ids: str, tenant: str = DEFAULT_TENANT) -> uuid.UUID:
    """A task of the default agent that waits for approval of calculator calls ``call_ids``."""
    new = NewTask(
        tenant=tenant,
        agent="default",
        goal="What is 6 * 7?",
        model="offline:default",
        max_retries=1,
        timeout_seconds=60,
    )
    task, _ = await runtime.store.create(new)
    claim = await runtime.store.claim(task.id, "w1")
    assert claim is not None
    asked = [
        NewApproval(
            step=1,
            call_id=call_id,
            tool="calculator",
            arguments={"expression": "6 * 7"},
            reason="tool 'calculator' requires approval",
            expires_at=utcnow() + timedelta(hours=1),
        )
        for call_id in call_ids or ("c1",)
    ]
    assert await runtime.approvals.suspend(
        task.id, claim.attempt, checkpoint={}, approvals=asked, input_tokens=0, output_tokens=0
    )
    return task.id


async def test_pending_approvals_are_listed_and_decided(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = await waiting_task(runtime, "c1", "c2")

    listed = await client.get("/v1/approvals", params={"status": "pending"})
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [(i["task_id"], i["call_id"], i["tool"]) for i in items] == [
        (str(task_id), "c1", "calculator"),
        (str(task_id), "c2", "calculator"),
    ]
    assert items[0]["arguments"] == {"expression": "6 * 7"} and "requires approval" in items[0]["reason"]

    first = await client.post(f"/v1/tasks/{task_id}/approvals/c1", json={"decision": "deny", "reason": "not today"})
    assert first.status_code == 200, first.text
    assert first.json()["approval"]["status"] == "denied" and first.json()["task_status"] == "waiting"
    assert first.json()["approval"]["decision_reason"] == "not today"
    second = await client.post(
        f"/v1/tasks/{task_id}/approvals/c2", json={"decision": "approve", "arguments": {"expression": "2 + 2"}}
    )
    assert second.status_code == 200, second.text
    assert second.json()["task_status"] == "pending"
    assert second.json()["approval"]["edited_arguments"] == {"expression": "2 + 2"}
    assert (await client.get("/v1/approvals", params={"status": "pending"})).json()["items"] == []
    decided = (await client.get("/v1/approvals", params={"task_id": str(task_id)})).json()["items"]
    assert [i["status"] for i in decided] == ["denied", "approved"]
    assert all(i["decided_by"] and i["decided_at"] for i in decided)
    assert (await client.get(f"/v1/tasks/{task_id}")).json()["status"] == "pending"


async def test_bad_decisions_get_a_clear_4xx(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = await waiting_task(runtime, "c1")
    url = f"/v1/tasks/{task_id}/approvals/c1"

    for body, status, words in (
        ({"decision": "maybe"}, 422, "decision"),
        ({"decision": "approve", "arguments": {"expression": 7}}, 422, "expression"),
        ({"decision": "approve", "arguments": {"nope": "x"}}, 422, "expression"),
        ({"decision": "deny", "arguments": {"expression": "1"}}, 422, "only"),
        ({"decision": "approve", "extra": 1}, 422, "extra"),
    ):
        response = await client.post(url, json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.text, (body, response.text)
    unknown_call = await client.post(f"/v1/tasks/{task_id}/approvals/nope", json={"decision": "approve"})
    assert unknown_call.status_code == 404 and unknown_call.json()["error"]["code"] == "approval_not_found"
    unknown_task = await client.post(f"/v1/tasks/{uuid.uuid4()}/approvals/c1", json={"decision": "approve"})
    assert unknown_task.status_code == 404 and unknown_task.json()["error"]["code"] == "task_not_found"

    assert (await client.post(url, json={"decision": "approve"})).status_code == 200
    again = await client.post(url, json={"decision": "deny"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_waiting", again.text
    assert "pending" in again.json()["error"]["message"]


async def test_a_waiting_task_is_cancelled_at_once(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task_id = await waiting_task(runtime, "c1")

    cancelled = await client.post(f"/v1/tasks/{task_id}/cancel")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    assert (await client.get("/v1/approvals", params={"status": "pending"})).json()["items"] == []
    late = await client.post(f"/v1/tasks/{task_id}/approvals/c1", json={"decision": "approve"})
    assert late.status_code == 409 and "cancelled" in late.json()["error"]["message"]


async def test_another_tenant_neither_sees_nor_decides(app: object, runtime: Runtime) -> None:
    task_id = await waiting_task(runtime, "c1", tenant="acme")
    _, reader = await runtime.access.create_key(tenant="other", scopes=[Scope.TASKS_READ, Scope.TASKS_WRITE])
    _, own = await runtime.access.create_key(tenant="acme", scopes=[Scope.TASKS_READ])
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        other = {"Authorization": f"Bearer {reader}"}
        assert (await http.get("/v1/approvals", headers=other)).json()["items"] == []
        refused = await http.post(f"/v1/tasks/{task_id}/approvals/c1", json={"decision": "approve"}, headers=other)
        assert refused.status_code == 404
        read_only = {"Authorization": f"Bearer {own}"}
        assert len((await http.get("/v1/approvals", headers=read_only)).json()["items"]) == 1
        forbidden = await http.post(
            f"/v1/tasks/{task_id}/approvals/c1", json={"decision": "approve"}, headers=read_only
        )
        assert forbidden.status_code == 403
