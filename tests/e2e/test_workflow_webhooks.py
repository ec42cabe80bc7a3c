"""A workflow's completion webhook, live: one signed delivery of its final record when it ends.

A receiver in this test refuses each delivery's first attempt (503) and verifies the second with the
``standardwebhooks`` package against the tenant's secret read from the API. A workflow of two steps
runs on two workers; it is delivered once, as ``workflow.completed``, with the record
``GET /v1/workflows/{id}`` answers; its steps' tasks send nothing of their own. A workflow cancelled
while its slow step runs is delivered once as ``workflow.cancelled``, after that step settled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import Deployment
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import Receiver, serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TENANT = "flowhooks"
MODEL = "openai:fake-model"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with serve("/workflows", (503,)) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def hooked(deployments: DeploymentFactory) -> Deployment:
    env = {
        "OPSCORE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "OPSCORE_WEBHOOK_BACKOFF_SECONDS": "0.5",
        "OPSCORE_WEBHOOK_BACKOFF_MAX_SECONDS": "1",
        "OPSCORE_WEBHOOK_POLL_SECONDS": "0.2",
        "OPSCORE_RELAY_INTERVAL_SECONDS": "0.5",
    }
    return deployments(workers=2, env=env)


@pytest.fixture
async def client(hooked: Deployment, receiver: Receiver) -> Any:
    key = hooked.create_key(TENANT, "tasks:read", "tasks:write", "webhooks")
    async with httpx.AsyncClient(
        base_url=hooked.api_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        secret = await http.get("/v1/webhooks/secret")
        assert secret.status_code == 200, secret.text
        receiver.secret = secret.json()["secret"]
        yield http


async def delivered(client: httpx.AsyncClient, hooked: Deployment, workflow_id: str) -> dict[str, Any]:
    async def deliveries() -> list[dict[str, Any]]:
        answer = await client.get(f"/v1/workflows/{workflow_id}/webhooks")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])

    [delivery] = await wait_for(
        deliveries,
        lambda found: bool(found) and found[0]["status"] == "delivered",
        timeout=90,
        what=f"workflow {workflow_id}'s webhook to be delivered\n{hooked.logs()}",
    )
    return delivery


async def test_a_finished_workflow_is_delivered_once_signed(
    client: httpx.AsyncClient, hooked: Deployment, receiver: Receiver
) -> None:
    refused = await client.post(
        "/v1/workflows", json={"steps": [{"name": "a", "goal": "x"}], "callback_url": "http://10.0.0.1/hook"}
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_callback_url"

    marker = uuid.uuid4().hex[:8]
    body = {
        "callback_url": receiver.url,
        "steps": [
            {"name": "research", "goal": f"research {marker}", "model": MODEL},
            {"name": "write", "goal": "write: {{steps.research.result}}", "depends_on": ["research"], "model": MODEL},
        ],
    }
    submitted = await client.post("/v1/workflows", json=body)
    assert submitted.status_code == 202, submitted.text
    workflow_id = submitted.json()["id"]

    delivery = await delivered(client, hooked, workflow_id)
    final = (await client.get(f"/v1/workflows/{workflow_id}")).json()
    assert final["status"] == "completed", final
    assert {step["status"] for step in final["steps"]} == {"completed"}

    ours = receiver.of(delivery["webhook_id"])
    assert [r.answered for r in ours] == [503, 200], "each attempt reached the receiver once"
    assert all(r.headers["opscore-event"] == "workflow.completed" for r in ours)
    assert len({r.body for r in ours}) == 1, "every attempt sends the same body"
    assert final in receiver.verified, "the signature verified, and the body is the workflow's final record"
    assert delivery["event_type"] == "workflow.completed" and delivery["payload"] == final
    assert [(a["attempt"], a["status_code"]) for a in delivery["history"]] == [(1, 503), (2, 200)]
    listed = (await client.get("/v1/webhooks/deliveries", params={"workflow_id": workflow_id})).json()["items"]
    assert listed == [delivery], "exactly one delivery for the workflow's end"
    for step in final["steps"]:
        assert (await client.get(f"/v1/tasks/{step['task_id']}/webhooks")).json() == {"items": []}


async def test_a_cancelled_workflow_is_delivered_with_its_steps_settled(
    client: httpx.AsyncClient, hooked: Deployment, receiver: Receiver
) -> None:
    # A slow step (its model answers after 5 s): pending or running when the workflow is cancelled, so the
    # step after it is skipped, and the webhook waits until the slow one has settled too.
    body = {
        "callback_url": receiver.url,
        "steps": [
            {"name": "slow", "goal": f"[[delay=5]] {uuid.uuid4().hex[:8]}", "model": MODEL},
            {"name": "after", "goal": "y", "depends_on": ["slow"], "model": MODEL},
        ],
    }
    submitted = await client.post("/v1/workflows", json=body)
    assert submitted.status_code == 202, submitted.text
    workflow_id = submitted.json()["id"]
    cancelled = await client.post(f"/v1/workflows/{workflow_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text

    delivery = await delivered(client, hooked, workflow_id)
    assert delivery["event_type"] == "workflow.cancelled"
    sent = delivery["payload"]
    assert sent["status"] == "cancelled" and sent["reason"] == "cancelled on request"
    assert {s["name"]: s["status"] for s in sent["steps"]}["after"] == "skipped"
    assert {s["name"]: s["status"] for s in sent["steps"]}["slow"] in {"cancelled", "completed"}
    assert sent == (await client.get(f"/v1/workflows/{workflow_id}")).json()
    assert sent in receiver.verified
    assert receiver.of(delivery["webhook_id"])[-1].headers["opscore-event"] == "workflow.cancelled"
