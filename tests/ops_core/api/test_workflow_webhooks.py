"""A workflow's callback_url in the API: checked at submission like a task's, part of what the
idempotency key names, refused on a step (with run_at and delay_seconds), and the workflow's
delivery visible at /v1/workflows/{id}/webhooks and /v1/webhooks/deliveries?workflow_id=."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ops_core.errors import InvalidRequest
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.api.test_webhooks import PUBLIC, client_for, key
from tests.ops_core.api.test_workflows import complete, submit


def two_steps(**extra: Any) -> dict[str, Any]:
    return {
        "steps": [
            {"name": "research", "goal": "collect"},
            {"name": "write", "goal": "write up {{steps.research.result}}", "depends_on": ["research"]},
        ],
        **extra,
    }


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:8080/hook", "may not reach 127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "may not reach 169.254.169.254"),
        ("ftp://93.184.216.34/hook", "must be http or https"),
    ],
)
async def test_an_unsafe_callback_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, runtime: Runtime, url: str, says: str
) -> None:
    error = (await submit(client, two_steps(callback_url=url), expect=422))["error"]
    assert error["code"] == "invalid_callback_url" and says in error["message"], error
    assert (await client.get("/v1/workflows")).json()["items"] == []
    assert (await runtime.store.list(tenant=EVERY_TENANT)).items == []


async def test_a_callback_is_stored_shown_and_named_by_the_idempotency_key(client: httpx.AsyncClient) -> None:
    workflow = await submit(client, two_steps(callback_url=PUBLIC, idempotency_key="k1"))
    assert workflow["callback_url"] == PUBLIC
    assert (await client.get(f"/v1/workflows/{workflow['id']}")).json()["callback_url"] == PUBLIC
    assert (await client.get("/v1/workflows")).json()["items"][0]["callback_url"] == PUBLIC
    again = await submit(client, two_steps(callback_url=PUBLIC, idempotency_key="k1"), expect=200)
    assert again["id"] == workflow["id"]
    other = PUBLIC.replace("opscore", "other")
    conflict = await submit(client, two_steps(callback_url=other, idempotency_key="k1"), expect=409)
    assert conflict["error"]["code"] == "idempotency_conflict"
    assert (await submit(client, two_steps()))["callback_url"] is None


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("callback_url", PUBLIC, "step 'write': callback_url is not taken on a step; set it on the workflow"),
        ("run_at", "2020-01-01T00:00:00Z", "step 'write': run_at is not taken on a step"),
        ("run_at", "2099-01-01T00:00:00Z", "step 'write': run_at is not taken on a step"),
        ("delay_seconds", 30, "step 'write': delay_seconds is not taken on a step"),
        ("session_id", "00000000-0000-4000-8000-000000000000", "step 'write': session_id is not taken on a step"),
    ],
)
async def test_a_step_refuses_the_options_that_are_not_a_steps(
    client: httpx.AsyncClient, runtime: Runtime, option: str, value: Any, says: str
) -> None:
    body = two_steps()
    body["steps"][1][option] = value
    error = (await submit(client, body, expect=422))["error"]
    assert error["code"] == "validation_error" and says in error["message"], error
    assert (await client.get("/v1/workflows")).json()["items"] == []
    with pytest.raises(InvalidRequest, match=f"workflow template: .*{says}"):
        await runtime.workflows.submit_template(body, tenant="acme")


async def test_a_workflows_delivery_is_its_final_record(app: FastAPI, runtime: Runtime) -> None:
    acme = await key(runtime, Scope.TASKS_READ, Scope.TASKS_WRITE, tenant="acme")
    async with client_for(app, acme) as http:
        workflow = await submit(http, two_steps(callback_url=PUBLIC))
        workflow_id = workflow["id"]
        assert (await http.get(f"/v1/workflows/{workflow_id}/webhooks")).json() == {"items": []}
        await complete(runtime, workflow["steps"][0]["task_id"], "FACTS")
        advanced = await runtime.workflows.advance(uuid.UUID(workflow_id))
        [write] = advanced.started
        await complete(runtime, str(write.id), "REPORT")
        await runtime.workflows.advance(uuid.UUID(workflow_id))

        listed = await http.get(f"/v1/workflows/{workflow_id}/webhooks")
        assert listed.status_code == 200, listed.text
        [delivery] = listed.json()["items"]
        assert (delivery["subject_type"], delivery["subject_id"]) == ("workflow", workflow_id)
        assert (delivery["event_type"], delivery["status"]) == ("workflow.completed", "pending")
        assert delivery["url"] == PUBLIC
        final = (await http.get(f"/v1/workflows/{workflow_id}")).json()
        assert final["status"] == "completed" and delivery["payload"] == final
        by_query = await http.get("/v1/webhooks/deliveries", params={"workflow_id": workflow_id})
        assert by_query.json() == listed.json()
        both = await http.get("/v1/webhooks/deliveries", params={"workflow_id": workflow_id, "task_id": write.id})
        assert both.status_code == 422 and "not both" in both.json()["error"]["message"]
        # The steps' tasks have no callback_url of their own: the workflow's is the one delivery.
        assert len((await http.get("/v1/webhooks/deliveries")).json()["items"]) == 1

    async with client_for(app, await key(runtime, Scope.TASKS_READ, tenant="globex")) as other:
        missing = await other.get(f"/v1/workflows/{workflow_id}/webhooks")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "workflow_not_found"
        assert (await other.get("/v1/webhooks/deliveries", params={"workflow_id": workflow_id})).json() == {"items": []}
