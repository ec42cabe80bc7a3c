"""Completion webhooks, live: a receiver that refuses the first two deliveries and verifies the third.

The receiver is a small HTTP server in this test. It answers 500, then 503, then 200, and checks the
third delivery's signature with the ``standardwebhooks`` package against the secret the tenant reads
from the API. All three carry the same ``webhook-id``; the attempts are visible through the API.
The deployment allows callbacks to 127.0.0.1 (``OPSCORE_WEBHOOK_ALLOWED_HOSTS``) and retries after
fractions of a second, so the test does not wait long; two worker processes deliver, and the
receiver still gets each attempt once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import TERMINAL, Deployment, Stack
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import Receiver, serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TENANT = "hooks"
REFUSALS = (500, 503)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with serve("/opscore", REFUSALS) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def hooked(deployments: DeploymentFactory) -> Deployment:
    env = {
        "OPSCORE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "OPSCORE_WEBHOOK_BACKOFF_SECONDS": "0.5",
        "OPSCORE_WEBHOOK_BACKOFF_MAX_SECONDS": "1",
        "OPSCORE_WEBHOOK_POLL_SECONDS": "0.2",
    }
    return deployments(workers=2, env=env)


async def test_refused_twice_then_delivered_and_verified(hooked: Deployment, receiver: Receiver) -> None:
    key = hooked.create_key(TENANT, "tasks:read", "tasks:write", "webhooks")
    async with httpx.AsyncClient(
        base_url=hooked.api_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        stack = Stack(hooked, client)
        secret = await client.get("/v1/webhooks/secret")
        assert secret.status_code == 200, secret.text
        receiver.secret = secret.json()["secret"]

        refused = await client.post("/v1/tasks", json={"goal": "hi", "callback_url": "http://10.0.0.1/hook"})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_callback_url"

        task = await stack.submit(goal="What is 6 * 7?", callback_url=receiver.url)
        done = await stack.wait_status(task["id"], TERMINAL, timeout=60)
        assert done["status"] == "completed", stack.logs()

        async def deliveries() -> list[dict[str, Any]]:
            answer = await client.get(f"/v1/tasks/{task['id']}/webhooks")
            assert answer.status_code == 200, answer.text
            return list(answer.json()["items"])

        [delivery] = await wait_for(
            deliveries,
            lambda found: bool(found) and found[0]["status"] == "delivered",
            timeout=60,
            what=f"the webhook to be delivered\n{stack.logs()}",
        )
        record = await stack.task(task["id"])
        listed = (await client.get("/v1/webhooks/deliveries", params={"task_id": task["id"]})).json()["items"]

    ours = [r for r in receiver.received if r.headers.get("webhook-id") == delivery["webhook_id"]]
    assert [r.answered for r in ours] == [500, 503, 200], "each attempt reached the receiver once"
    assert len({r.headers["webhook-id"] for r in ours}) == 1
    assert len({r.body for r in ours}) == 1, "every attempt sends the same body"
    assert all(r.headers["opscore-event"] == "task.completed" for r in ours)
    assert receiver.verified == [record], "the third delivery's signature verified, and it carried the final record"
    assert json.loads(ours[0].body)["result"] == done["result"]

    assert delivery["attempts"] == 3 and delivery["delivered_at"] is not None
    assert [(a["attempt"], a["status_code"]) for a in delivery["history"]] == [(1, 500), (2, 503), (3, 200)]
    assert [a["error"] for a in delivery["history"]] == ["HTTP 500", "HTTP 503", None]
    assert listed == [delivery]
