"""``/v1/workflows``: submit, validation messages naming the step, idempotency, reads, paging, cancel, tenants."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from ops_core.errors import InvalidRequest
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT
from ops_core.workflow_spec import MAX_STEPS

MODEL = "offline:default"


def diamond(**extra: Any) -> dict[str, Any]:
    return {
        "steps": [
            {"name": "a", "goal": "research", "model": MODEL, "priority": 3, "input": {"topic": "x"}},
            {"name": "b", "goal": "expand {{steps.a.result}}", "depends_on": ["a"]},
            {"name": "c", "goal": "criticise {{steps.a.result}}", "depends_on": ["a"], "continue_on_failure": True},
            {"name": "d", "goal": "merge {{steps.b.result}} {{steps.c.result}}", "depends_on": ["b", "c"]},
        ],
        **extra,
    }


async def submit(client: httpx.AsyncClient, body: dict[str, Any], expect: int = 202) -> dict[str, Any]:
    response = await client.post("/v1/workflows", json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def complete(runtime: Runtime, task_id: str, result: Any) -> None:
    claim = await runtime.store.claim(uuid.UUID(task_id), "w1")
    assert claim is not None
    done = await runtime.store.complete(
        claim.task.id, claim.attempt, result=result, input_tokens=1, output_tokens=1, reused_tokens=0
    )
    assert done


async def test_submit_starts_the_roots_as_tasks_with_their_options(client: httpx.AsyncClient) -> None:
    workflow = await submit(client, diamond())
    assert workflow["status"] == "running" and workflow["tenant"] == DEFAULT_TENANT
    steps = {s["name"]: s for s in workflow["steps"]}
    assert [s["name"] for s in workflow["steps"]] == ["a", "b", "c", "d"]
    assert {n: s["status"] for n, s in steps.items()} == {
        "a": "started",
        "b": "blocked",
        "c": "blocked",
        "d": "blocked",
    }
    assert steps["c"]["continue_on_failure"] and steps["d"]["depends_on"] == ["b", "c"]
    root = (await client.get(f"/v1/tasks/{steps['a']['task_id']}")).json()
    assert (root["status"], root["goal"], root["priority"], root["input"]) == ("pending", "research", 3, {"topic": "x"})
    assert steps["b"]["task_id"] is None


async def test_a_step_starts_with_its_parents_results_when_they_complete(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    workflow = await submit(client, diamond())
    first = {s["name"]: s for s in workflow["steps"]}["a"]
    await complete(runtime, first["task_id"], "FACTS")
    await runtime.workflows.advance(uuid.UUID(workflow["id"]))
    read = (await client.get(f"/v1/workflows/{workflow['id']}")).json()
    steps = {s["name"]: s for s in read["steps"]}
    assert steps["a"]["status"] == "completed" and steps["a"]["task_status"] == "completed"
    assert (await client.get(f"/v1/tasks/{steps['b']['task_id']}")).json()["goal"] == "expand FACTS"
    assert (await client.get(f"/v1/tasks/{steps['c']['task_id']}")).json()["goal"] == "criticise FACTS"


@pytest.mark.parametrize(
    ("steps", "code", "message"),
    [
        (
            [{"name": "a", "goal": "x", "depends_on": ["b"]}, {"name": "b", "goal": "y", "depends_on": ["a"]}],
            "invalid_request",
            "step 'a' is in a cycle: 'a' → 'b' → 'a'",
        ),
        ([{"name": "a", "goal": "x", "depends_on": ["nope"]}], "invalid_request", "step 'a' depends on unknown step"),
        ([{"name": "a", "goal": "x", "agent": "ghost"}], "unknown_agent", "step 'a': unknown agent 'ghost'"),
        ([{"name": "a", "goal": "x", "model": "nowhere:m"}], "invalid_model", "step 'a': "),
        (
            [{"name": "a", "goal": "x"}, {"name": "b", "goal": "{{steps.a.result}}"}],
            "invalid_request",
            "step 'b': '{{steps.a.result}}' quotes step 'a', which is not among its ancestors",
        ),
        ([{"name": "a", "goal": "x"}, {"name": "a", "goal": "y"}], "invalid_request", "step 'a' is named twice"),
    ],
)
async def test_a_bad_workflow_is_refused_naming_the_step(
    client: httpx.AsyncClient, steps: list[dict[str, Any]], code: str, message: str
) -> None:
    error = (await submit(client, {"steps": steps}, expect=422))["error"]
    assert error["code"] == code and message in error["message"], error
    assert (await client.get("/v1/workflows")).json()["items"] == [], "nothing was stored"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [{"name": "a", "goal": "x", "idempotency_key": "k"}]}, "set idempotency_key on the workflow"),
        ({"steps": [{"name": "a b", "goal": "x"}]}, "name"),
        ({"steps": [{"name": "a", "goal": "x", "max_retries": -1}]}, "max_retries"),
        ({"steps": [{"name": "a", "goal": "x", "concurrency_limit": 2}]}, "needs a concurrency_key"),
        ({"steps": [{"name": f"s{i}", "goal": "x"} for i in range(MAX_STEPS + 1)]}, "steps"),
        ({"steps": [{"name": "a", "goal": "x", "surprise": 1}]}, "surprise"),
    ],
)
async def test_the_task_options_rules_apply_to_steps(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    error = (await submit(client, body, expect=422))["error"]
    assert message in error["message"], error


async def test_an_idempotency_key_names_one_workflow(client: httpx.AsyncClient) -> None:
    first = await submit(client, diamond(idempotency_key="nightly-1"))
    again = await submit(client, diamond(idempotency_key="nightly-1"), expect=200)
    assert again["id"] == first["id"] and again["steps"] == first["steps"]
    changed = diamond(idempotency_key="nightly-1")
    changed["steps"][0]["goal"] = "something else"
    conflict = await submit(client, changed, expect=409)
    assert conflict["error"]["code"] == "idempotency_conflict" and first["id"] in conflict["error"]["message"]
    assert len((await client.get("/v1/workflows")).json()["items"]) == 1


async def test_workflows_are_listed_newest_first_with_a_cursor(client: httpx.AsyncClient) -> None:
    ids = [(await submit(client, {"steps": [{"name": "only", "goal": f"g{i}"}]}))["id"] for i in range(5)]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await client.get("/v1/workflows", params=params)).json()
        seen += [w["id"] for w in page["items"]]
        assert all("steps" not in w for w in page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == list(reversed(ids))
    assert (await client.get("/v1/workflows", params={"status": "completed"})).json()["items"] == []
    bad = await client.get("/v1/workflows", params={"cursor": "!!"})
    assert bad.status_code == 422


async def test_cancel_cascades_to_every_step(client: httpx.AsyncClient) -> None:
    workflow = await submit(client, diamond())
    cancelled = await client.post(f"/v1/workflows/{workflow['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["reason"] == "cancelled on request"
    steps = {s["name"]: s for s in body["steps"]}
    # It was pending: cancelled at once, and the step settled with it.
    assert (steps["a"]["status"], steps["a"]["task_status"]) == ("cancelled", "cancelled")
    assert {steps[n]["status"] for n in "bcd"} == {"skipped"}
    again = await client.post(f"/v1/workflows/{workflow['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "workflow_finished"
    missing = await client.post(f"/v1/workflows/{uuid.uuid4()}/cancel")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "workflow_not_found"


async def test_another_tenant_neither_sees_nor_cancels(
    app: object, runtime: Runtime, client: httpx.AsyncClient
) -> None:
    _, acme_writer = await runtime.access.create_key(tenant="acme", scopes=[Scope.TASKS_READ, Scope.TASKS_WRITE])
    _, acme_reader = await runtime.access.create_key(tenant="acme", scopes=[Scope.TASKS_READ])
    _, other = await runtime.access.create_key(tenant="other", scopes=[Scope.TASKS_READ, Scope.TASKS_WRITE])
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        acme = {"Authorization": f"Bearer {acme_writer}"}
        created = await http.post("/v1/workflows", json=diamond(), headers=acme)
        assert created.status_code == 202 and created.json()["tenant"] == "acme"
        workflow_id = created.json()["id"]
        task_id = created.json()["steps"][0]["task_id"]
        assert (await http.get(f"/v1/tasks/{task_id}", headers=acme)).json()["tenant"] == "acme"

        others = {"Authorization": f"Bearer {other}"}
        assert (await http.get(f"/v1/workflows/{workflow_id}", headers=others)).status_code == 404
        assert (await http.get("/v1/workflows", headers=others)).json()["items"] == []
        assert (await http.post(f"/v1/workflows/{workflow_id}/cancel", headers=others)).status_code == 404

        reader = {"Authorization": f"Bearer {acme_reader}"}
        assert (await http.get(f"/v1/workflows/{workflow_id}", headers=reader)).status_code == 200
        assert (await http.post("/v1/workflows", json=diamond(), headers=reader)).status_code == 403
        assert (await http.post(f"/v1/workflows/{workflow_id}/cancel", headers=reader)).status_code == 403
        assert (await http.get("/v1/workflows")).status_code == 401
    # An admin sees every tenant's.
    assert [w["id"] for w in (await client.get("/v1/workflows")).json()["items"]] == [workflow_id]


async def test_a_template_starts_a_workflow_once_per_key(runtime: Runtime, client: httpx.AsyncClient) -> None:
    template = {"steps": [{"name": "report", "goal": "write the morning report"}]}
    view, created = await runtime.workflows.submit_template(template, tenant="acme", idempotency_key="sched-1:0700")
    again, created_again = await runtime.workflows.submit_template(
        template, tenant="acme", idempotency_key="sched-1:0700"
    )
    assert created and not created_again and again.workflow.id == view.workflow.id
    assert view.workflow.tenant == "acme" and view.steps[0].task_id is not None
    with pytest.raises(InvalidRequest, match="workflow template: steps: Input should be a valid list"):
        await runtime.workflows.submit_template({"steps": "nope"}, tenant="acme")
    with pytest.raises(InvalidRequest, match="step 'x' depends on unknown step 'y'"):
        await runtime.workflows.submit_template(
            {"steps": [{"name": "x", "goal": "g", "depends_on": ["y"]}]}, tenant="acme"
        )


async def test_a_tenants_model_list_applies_to_every_step(app: object, runtime: Runtime) -> None:
    await runtime.access.set_quotas("narrow", {"allowed_models": "offline:other"})
    _, secret = await runtime.access.create_key(tenant="narrow", scopes=[Scope.TASKS_WRITE, Scope.TASKS_READ])
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {secret}"}
    steps = [{"name": "ok", "goal": "x", "model": "offline:other"}, {"name": "wide", "goal": "y", "model": MODEL}]
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as http:
        refused = await http.post("/v1/workflows", json={"steps": steps})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "model_not_allowed" and error["message"].startswith(
            "step 'wide': model 'offline:default'"
        )
        assert (await http.get("/v1/workflows")).json()["items"] == []
