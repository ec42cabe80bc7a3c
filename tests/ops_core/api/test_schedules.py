"""``/v1/schedules`` over HTTP: create with validation, list, get with next runs, pause, resume, delete, tenancy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.scheduler import ScheduleTicker
from tests.ops_core.api.test_errors import error_of

Client = Callable[..., Awaitable[httpx.AsyncClient]]
TEMPLATE: dict[str, Any] = {"agent": "default", "goal": "morning report", "input": {"team": "ops"}}


@pytest.fixture
async def client_for(app: FastAPI, runtime: Runtime) -> AsyncIterator[Client]:
    opened: list[httpx.AsyncClient] = []

    async def make(tenant: str, *scopes: Scope) -> httpx.AsyncClient:
        _, secret = await runtime.access.create_key(tenant=tenant, scopes=scopes)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", headers={"Authorization": f"Bearer {secret}"}
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/schedules", json={"cron": "0 9 * * *", "template": TEMPLATE, **body})


async def test_create_shows_the_next_runs_in_the_time_zone(client: httpx.AsyncClient) -> None:
    response = await create(client, timezone="Europe/Berlin", name="daily", catch_up="run_last")

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["state"], body["catch_up"], body["name"], body["timezone"]) == (
        "active",
        "run_last",
        "daily",
        "Europe/Berlin",
    )
    assert body["template"] == {
        **TEMPLATE,
        "kind": "task",
        "model": None,
        "max_retries": None,
        "timeout_seconds": None,
        "priority": 0,
        "schedule_to_start_seconds": None,
        "concurrency_key": None,
        "concurrency_limit": None,
        "callback_url": None,
    }
    runs = [datetime.fromisoformat(r) for r in body["next_runs"]]
    assert len(runs) == 5 and runs == sorted(runs) and runs[0] > datetime.now(UTC)
    assert datetime.fromisoformat(body["next_run_at"]) == runs[0]
    assert {r.astimezone(ZoneInfo("Europe/Berlin")).hour for r in runs} == {9}
    assert (body["fired"], body["skipped"], body["last_tick_at"], body["last_task_id"]) == (0, 0, None, None)

    fetched = await client.get(f"/v1/schedules/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"timezone": "Mars/Olympus"}, "invalid_request", "timezone:"),
        ({"cron": "0 9 * *"}, "invalid_request", "cron:"),
        ({"cron": "99 * * * *"}, "invalid_request", "cron:"),
        ({"cron": "0 0 30 2 *"}, "invalid_request", "never matches"),
        ({"cron": ""}, "validation_error", "cron"),
        ({"catch_up": "run_all"}, "validation_error", "catch_up"),
        ({"template": {**TEMPLATE, "agent": "nobody"}}, "unknown_agent", "nobody"),
        ({"template": {**TEMPLATE, "model": "nope:x"}}, "invalid_model", "nope"),
        ({"template": {**TEMPLATE, "kind": "cron_job"}}, "validation_error", "kind must be 'task' or 'workflow'"),
        ({"template": {**TEMPLATE, "idempotency_key": "k"}}, "validation_error", "set by the schedule"),
        ({"template": {**TEMPLATE, "delay_seconds": 5}}, "validation_error", "set by the schedule"),
        ({"template": {"agent": "default"}}, "validation_error", "goal"),
        ({"template": {**TEMPLATE, "priority": 99}}, "validation_error", "priority"),
        ({"extra": 1}, "validation_error", "extra"),
    ],
)
async def test_bad_schedules_are_422_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any], code: str, says: str
) -> None:
    response = await create(client, **body)

    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == code and says in error["message"], error
    assert (await runtime.schedules.store.list(tenant=EVERY_TENANT)).items == []


async def test_list_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    made = [(await create(client, name=f"s{i}")).json()["id"] for i in range(5)]

    seen: list[str] = []
    url = "/v1/schedules?limit=2"
    while True:
        page = (await client.get(url)).json()
        seen += [s["id"] for s in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/v1/schedules?limit=2&cursor={page['next_cursor']}"
    assert seen == list(reversed(made))
    bad = await client.get("/v1/schedules?cursor=garbage")
    assert bad.status_code == 422


async def test_pause_resume_delete(client: httpx.AsyncClient) -> None:
    made = (await create(client, cron="* * * * * *")).json()
    path = f"/v1/schedules/{made['id']}"

    paused = (await client.post(f"{path}/pause")).json()
    assert (paused["state"], paused["next_run_at"], paused["next_runs"]) == ("paused", None, [])
    assert (await client.post(f"{path}/pause")).json()["state"] == "paused"

    resumed = (await client.post(f"{path}/resume")).json()
    assert resumed["state"] == "active"
    assert datetime.fromisoformat(resumed["next_run_at"]) > datetime.now(UTC) - timedelta(seconds=1)

    assert (await client.delete(path)).status_code == 204
    gone = await client.get(path)
    assert gone.status_code == 404 and error_of(gone)["code"] == "schedule_not_found"
    assert (await client.delete(path)).status_code == 404
    assert (await client.post(f"{path}/resume")).status_code == 404


async def test_schedules_are_tenant_scoped(client_for: Client) -> None:
    acme = await client_for("acme", Scope.TASKS_READ, Scope.TASKS_WRITE)
    other = await client_for("other", Scope.TASKS_READ, Scope.TASKS_WRITE)
    made = (await create(acme)).json()
    assert made["tenant"] == "acme"
    path = f"/v1/schedules/{made['id']}"

    assert (await other.get(path)).status_code == 404
    assert (await other.post(f"{path}/pause")).status_code == 404
    assert (await other.delete(path)).status_code == 404
    assert (await other.get("/v1/schedules")).json()["items"] == []
    assert [s["id"] for s in (await acme.get("/v1/schedules")).json()["items"]] == [made["id"]]


async def test_reading_needs_a_key_and_writing_needs_the_write_scope(
    client_for: Client, anonymous: httpx.AsyncClient
) -> None:
    reader = await client_for("acme", Scope.TASKS_READ)
    assert (await anonymous.get("/v1/schedules")).status_code == 401
    assert (await anonymous.post("/v1/schedules", json={})).status_code == 401
    assert (await reader.get("/v1/schedules")).status_code == 200
    assert (await create(reader)).status_code == 403
    assert (await reader.delete(f"/v1/schedules/{uuid.uuid4()}")).status_code == 403


async def test_a_fired_tick_submits_the_template_into_the_schedules_tenant(
    client_for: Client, runtime: Runtime
) -> None:
    acme = await client_for("acme", Scope.TASKS_READ, Scope.TASKS_WRITE)
    made = (await create(acme, cron="* * * * * *")).json()
    due = datetime.fromisoformat(made["next_run_at"])
    ticker = ScheduleTicker(
        runtime.schedules.store,
        runtime.store,
        runtime.publisher,
        runtime.registry,
        runtime.settings,
        clock=lambda: due + timedelta(milliseconds=100),
    )

    [task_id] = await ticker.tick()

    task = (await acme.get(f"/v1/tasks/{task_id}")).json()
    assert (task["goal"], task["input"], task["status"]) == ("morning report", {"team": "ops"}, "pending")
    assert task["idempotency_key"] == f"schedule:{made['id']}:{due.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    assert runtime.broker.queues[runtime.settings.queue_name].qsize() == 1
    shown = (await acme.get(f"/v1/schedules/{made['id']}")).json()
    assert (shown["fired"], shown["last_task_id"]) == (1, str(task_id))


TWO_STEPS: dict[str, Any] = {
    "kind": "workflow",
    "steps": [
        {"name": "fetch", "goal": "fetch the numbers", "input": {"team": "ops"}},
        {"name": "report", "goal": "report {{steps.fetch.result}}", "depends_on": ["fetch"], "priority": 2},
    ],
}


def workflow_with(**step_b: Any) -> dict[str, Any]:
    return {**TWO_STEPS, "steps": [TWO_STEPS["steps"][0], {**TWO_STEPS["steps"][1], **step_b}]}


@pytest.mark.parametrize(
    ("template", "code", "says"),
    [
        (workflow_with(agent="nobody"), "unknown_agent", "step 'report': unknown agent 'nobody'"),
        (workflow_with(model="nope:x"), "invalid_model", "step 'report'"),
        (workflow_with(depends_on=["report"]), "invalid_request", "step 'report' depends on itself"),
        (workflow_with(depends_on=["later"]), "invalid_request", "step 'report' depends on unknown step 'later'"),
        (workflow_with(goal="{{steps.elsewhere.result}}"), "invalid_request", "step 'report'"),
        (workflow_with(name="fetch"), "invalid_request", "step 'fetch' is named twice"),
        (workflow_with(idempotency_key="k"), "validation_error", "set idempotency_key on the workflow"),
        ({**TWO_STEPS, "idempotency_key": "k"}, "validation_error", "set by the schedule"),
        ({**TWO_STEPS, "steps": []}, "validation_error", "steps"),
        ({"kind": "workflow", "agent": "default", "goal": "x"}, "validation_error", "steps"),
        ({**TWO_STEPS, "callback_url": "http://127.0.0.1:9/hook"}, "invalid_callback_url", "callback_url"),
    ],
)
async def test_a_workflow_template_is_checked_as_a_workflow_submission_is(
    client: httpx.AsyncClient, runtime: Runtime, template: dict[str, Any], code: str, says: str
) -> None:
    response = await create(client, template=template)

    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == code and says in error["message"], error
    assert (await runtime.schedules.store.list(tenant=EVERY_TENANT)).items == []
    # The same body, submitted as a workflow, is refused with the same error.
    submitted = {k: v for k, v in template.items() if k not in ("kind", "idempotency_key")}
    if code != "validation_error":
        as_workflow = await client.post("/v1/workflows", json=submitted)
        assert as_workflow.status_code == 422 and error_of(as_workflow) == error


async def test_a_workflow_tick_starts_the_workflow_once_and_the_schedule_shows_it(
    client_for: Client, runtime: Runtime
) -> None:
    acme = await client_for("acme", Scope.TASKS_READ, Scope.TASKS_WRITE)
    response = await create(acme, cron="* * * * * *", template=TWO_STEPS)
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["template"]["kind"] == "workflow" and "idempotency_key" not in made["template"]
    assert [s["name"] for s in made["template"]["steps"]] == ["fetch", "report"]
    assert (made["last_workflow_id"], made["last_task_id"], made["fired"]) == (None, None, 0)
    due = datetime.fromisoformat(made["next_run_at"])
    tickers = [
        ScheduleTicker(
            runtime.schedules.store,
            runtime.store,
            runtime.publisher,
            runtime.registry,
            runtime.settings,
            workflows=runtime.workflows,
            clock=lambda: due + timedelta(milliseconds=100),
        )
        for _ in range(2)
    ]

    for ticker in tickers:
        assert await ticker.tick() == []

    shown = (await acme.get(f"/v1/schedules/{made['id']}")).json()
    assert (shown["fired"], shown["last_task_id"]) == (1, None)
    workflow = (await acme.get(f"/v1/workflows/{shown['last_workflow_id']}")).json()
    assert workflow["tenant"] == "acme" and workflow["status"] == "running"
    assert workflow["idempotency_key"] == f"schedule:{made['id']}:{due.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    assert [(s["name"], s["status"]) for s in workflow["steps"]] == [("fetch", "started"), ("report", "blocked")]
    root = (await acme.get(f"/v1/tasks/{workflow['steps'][0]['task_id']}")).json()
    assert (root["goal"], root["input"], root["status"]) == ("fetch the numbers", {"team": "ops"}, "pending")
    assert runtime.broker.queues[runtime.settings.queue_name].qsize() == 1, "its root task, published once"
    assert len((await acme.get("/v1/workflows")).json()["items"]) == 1


async def test_the_template_is_a_union_discriminated_by_kind_in_openapi(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    template = spec["components"]["schemas"]["ScheduleCreate"]["properties"]["template"]

    assert template["discriminator"] == {
        "propertyName": "kind",
        "mapping": {
            "task": "#/components/schemas/TaskTemplate",
            "workflow": "#/components/schemas/WorkflowTemplate",
        },
    }
    assert template["oneOf"] == [
        {"$ref": "#/components/schemas/TaskTemplate"},
        {"$ref": "#/components/schemas/WorkflowTemplate"},
    ]
    assert "last_workflow_id" in spec["components"]["schemas"]["SchedulePublic"]["properties"]
