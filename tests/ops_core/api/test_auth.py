"""Who may call what: bearer keys, scopes, tenants and quotas over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from ops_core.api.app import create_app
from ops_core.api.auth import UNAUTHENTICATED, Authenticator
from ops_core.config import Settings
from ops_core.db.rules import utcnow
from ops_core.errors import Unauthenticated
from ops_core.keys import Scope, new_secret
from ops_core.runtime import Runtime
from tests.ops_core.api.test_errors import error_of

Client = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def client_for(app: FastAPI, runtime: Runtime) -> AsyncIterator[Client]:
    """Clients with new keys: ``await client_for("tenant", Scope.TASKS_READ, ...)``."""
    opened: list[httpx.AsyncClient] = []

    async def make(tenant: str, *scopes: Scope) -> httpx.AsyncClient:
        _, secret = await runtime.access.create_key(tenant=tenant, scopes=scopes)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {secret}"},
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert error_of(response) == {"code": "unauthenticated", "message": UNAUTHENTICATED}
    assert response.headers["www-authenticate"] == "Bearer"


V1_OPERATIONS = [
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", f"/v1/tasks/{uuid.uuid4()}"),
    ("POST", f"/v1/tasks/{uuid.uuid4()}/cancel"),
    ("POST", f"/v1/tasks/{uuid.uuid4()}/retry"),
    ("GET", f"/v1/tasks/{uuid.uuid4()}/events"),
    ("GET", "/v1/usage"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("POST", "/v1/keys/0123456789abcdef/revoke"),
    ("GET", "/v1/tenants"),
    ("GET", "/v1/tenants/a"),
    ("PATCH", "/v1/tenants/a"),
    ("GET", "/v1/workers"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize(("method", "path"), V1_OPERATIONS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        f"Bearer {new_secret().secret}",  # well-formed, unknown
    ],
)
async def test_every_protected_operation_is_401_without_a_valid_key(
    anonymous: httpx.AsyncClient, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_401(await anonymous.request(method, path, headers=headers, json={}))


async def test_health_docs_and_schema_stay_open(anonymous: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert (await anonymous.get(path)).status_code == 200, path


async def test_a_revoked_or_expired_key_is_401(
    app: FastAPI, runtime: Runtime, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    key, secret = await runtime.access.create_key(tenant="a", scopes=[Scope.TASKS_READ])
    _, expired_secret = await runtime.access.create_key(
        tenant="a", scopes=[Scope.TASKS_READ], expires_at=utcnow() - timedelta(seconds=1)
    )
    ok = await anonymous.get("/v1/tasks", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200

    assert (await client.post(f"/v1/keys/{key.id}/revoke")).json()["revoked_at"] is not None
    app.state.authenticator = Authenticator(runtime.access, cache_seconds=0)  # no cache: see the revocation now
    assert_401(await anonymous.get("/v1/tasks", headers={"Authorization": f"Bearer {secret}"}))
    assert_401(await anonymous.get("/v1/tasks", headers={"Authorization": f"Bearer {expired_secret}"}))
    # The right id with a wrong secret is as unknown as any other.
    forged = f"opsk_{key.id}_{new_secret().secret.rsplit('_', 1)[1]}"
    assert_401(await anonymous.get("/v1/tasks", headers={"Authorization": f"Bearer {forged}"}))


async def test_revocation_holds_once_the_cache_period_has_passed(runtime: Runtime) -> None:
    now = [0.0]
    authenticator = Authenticator(runtime.access, cache_seconds=2.0, clock=lambda: now[0])
    key, secret = await runtime.access.create_key(tenant="a", scopes=[Scope.TASKS_READ])
    assert (await authenticator.caller(secret)).tenant == "a"

    await runtime.access.revoke_key(key.id, tenant="a")
    now[0] = 1.9
    assert (await authenticator.caller(secret)).tenant == "a"  # still cached: the stated bound
    now[0] = 2.0
    with pytest.raises(Unauthenticated):
        await authenticator.caller(secret)


async def test_a_key_without_the_scope_is_403(client_for: Client) -> None:
    reader = await client_for("a", Scope.TASKS_READ)
    writer = await client_for("a", Scope.TASKS_WRITE)
    metrics = await client_for("a", Scope.METRICS)

    for response in (
        await reader.post("/v1/tasks", json={"goal": "x"}),
        await reader.post(f"/v1/tasks/{uuid.uuid4()}/cancel"),
        await reader.post(f"/v1/tasks/{uuid.uuid4()}/retry"),
        await writer.get("/v1/tasks"),
        await reader.get("/v1/workers"),
        await reader.get("/v1/keys"),
        await writer.post("/v1/keys", json={"tenant": "a"}),
        await reader.get("/v1/tenants"),
        await reader.get("/metrics"),
    ):
        assert response.status_code == 403, response.request.url
        assert error_of(response)["code"] == "forbidden"
    assert (await writer.post("/v1/tasks", json={"goal": "x"})).status_code == 202
    assert (await reader.get("/v1/tasks")).status_code == 200
    assert (await metrics.get("/metrics")).status_code == 200


async def test_another_tenants_task_is_404_and_lists_only_ones_own(client_for: Client) -> None:
    a = await client_for("a", Scope.TASKS_READ, Scope.TASKS_WRITE)
    b = await client_for("b", Scope.TASKS_READ, Scope.TASKS_WRITE)
    task = (await a.post("/v1/tasks", json={"goal": "mine"})).json()
    assert task["tenant"] == "a"

    for response in (
        await b.get(f"/v1/tasks/{task['id']}"),
        await b.get(f"/v1/tasks/{task['id']}/events"),
        await b.post(f"/v1/tasks/{task['id']}/cancel"),
        await b.post(f"/v1/tasks/{task['id']}/retry"),
    ):
        assert response.status_code == 404
        assert error_of(response)["code"] == "task_not_found"
    assert (await b.get("/v1/tasks")).json()["items"] == []
    assert [t["id"] for t in (await a.get("/v1/tasks")).json()["items"]] == [task["id"]]
    assert (await a.get(f"/v1/tasks/{task['id']}")).json()["status"] == "pending"


async def test_an_admin_sees_every_tenant(client_for: Client, client: httpx.AsyncClient) -> None:
    a = await client_for("a", Scope.TASKS_WRITE)
    task = (await a.post("/v1/tasks", json={"goal": "x"})).json()
    assert (await client.get(f"/v1/tasks/{task['id']}")).status_code == 200
    assert task["id"] in [t["id"] for t in (await client.get("/v1/tasks")).json()["items"]]


async def test_idempotency_keys_are_per_tenant(client_for: Client) -> None:
    a = await client_for("a", Scope.TASKS_WRITE)
    b = await client_for("b", Scope.TASKS_WRITE)
    first = await a.post("/v1/tasks", json={"goal": "x", "idempotency_key": "k"})
    other = await b.post("/v1/tasks", json={"goal": "another request", "idempotency_key": "k"})
    again = await a.post("/v1/tasks", json={"goal": "x", "idempotency_key": "k"})

    assert (first.status_code, other.status_code, again.status_code) == (202, 202, 200)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]


async def test_keys_api_creates_lists_and_revokes_without_showing_secrets(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/keys", json={"tenant": "team-a", "scopes": ["tasks:read"], "name": "ci", "expires_in_days": 30}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("opsk_") and body["tenant"] == "team-a" and body["scopes"] == ["tasks:read"]
    assert body["expires_at"] is not None

    listed = await client.get("/v1/keys", params={"tenant": "team-a"})
    assert [k["id"] for k in listed.json()["items"]] == [body["id"]]
    assert body["secret"] not in listed.text and "secret" not in listed.json()["items"][0]
    used = await client.get("/v1/tasks", headers={"Authorization": f"Bearer {body['secret']}"})
    assert used.status_code == 200
    listed = await client.get("/v1/keys", params={"tenant": "team-a"})
    assert listed.json()["items"][0]["last_used_at"] is not None

    revoked = await client.post(f"/v1/keys/{body['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await client.post("/v1/keys/0123456789abcdef/revoke")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"tenant": "Upper"},
        {"tenant": ""},
        {"tenant": "a", "scopes": []},
        {"tenant": "a", "scopes": ["root"]},
        {"tenant": "a", "expires_in_days": 0},
        {"tenant": "a", "secret": "mine"},
    ],
)
async def test_a_bad_key_request_is_422(client: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await client.post("/v1/keys", json=body)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


async def test_usage_is_per_tenant_by_agent_and_model(client_for: Client, runtime: Runtime) -> None:
    a = await client_for("a", Scope.TASKS_READ, Scope.TASKS_WRITE)
    b = await client_for("b", Scope.TASKS_READ, Scope.TASKS_WRITE)
    await a.post("/v1/tasks", json={"goal": "x"})
    await a.post("/v1/tasks", json={"goal": "y"})
    await b.post("/v1/tasks", json={"goal": "z"})

    usage = (await a.get("/v1/usage", params={"since": (utcnow() - timedelta(hours=1)).isoformat()})).json()
    assert [(r["tenant"], r["agent"], r["model"], r["tasks"]) for r in usage["items"]] == [
        ("a", "default", "offline:default", 2)
    ]
    assert (await a.get("/v1/usage")).json()["items"][0]["tasks"] == 2  # default: since midnight UTC
    assert (await a.get("/v1/usage", params={"tenant": "b"})).status_code == 403
    naive = await a.get("/v1/usage", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and "timezone" in error_of(naive)["message"]


async def test_quotas_are_set_by_an_admin(client: httpx.AsyncClient) -> None:
    response = await client.patch("/v1/tenants/a", json={"max_running": 2, "allowed_models": "offline:*"})
    assert response.status_code == 200
    assert response.json() == {
        "tenant": "a",
        "max_running": 2,
        "submissions_per_second": None,
        "daily_token_budget": None,
        "allowed_models": "offline:*",
    }
    cleared = await client.patch("/v1/tenants/a", json={"max_running": None})
    assert cleared.json()["max_running"] is None and cleared.json()["allowed_models"] == "offline:*"
    assert (await client.get("/v1/tenants")).json()["items"][0]["tenant"] == "a"
    for bad in ({"max_running": 0}, {"allowed_models": "nonsense"}, {"allowed_models": "bogus:*"}, {"tat": 1}):
        assert (await client.patch("/v1/tenants/a", json=bad)).status_code == 422, bad


async def test_the_submission_rate_is_429_with_retry_after(
    client: httpx.AsyncClient, client_for: Client, runtime: Runtime
) -> None:
    await runtime.access.set_quotas("a", {"submissions_per_second": 1.0})
    a = await client_for("a", Scope.TASKS_WRITE)
    assert (await a.post("/v1/tasks", json={"goal": "x"})).status_code == 202
    limited = await a.post("/v1/tasks", json={"goal": "y"})

    assert limited.status_code == 429
    assert error_of(limited)["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    # Another tenant is not slowed.
    assert (await client.post("/v1/tasks", json={"goal": "z"})).status_code == 202


async def test_a_spent_token_budget_is_429(client_for: Client, runtime: Runtime) -> None:
    await runtime.access.set_quotas("a", {"daily_token_budget": 10})
    a = await client_for("a", Scope.TASKS_WRITE)
    task = (await a.post("/v1/tasks", json={"goal": "x"})).json()
    claim = await runtime.store.claim(uuid.UUID(task["id"]), "w1")
    assert claim is not None
    await runtime.store.complete(
        claim.task.id, claim.attempt, result="", input_tokens=8, output_tokens=4, reused_tokens=0
    )
    runtime.quotas._spent.clear()  # the cache would see it within OPSCORE_AUTH_CACHE_SECONDS

    spent = await a.post("/v1/tasks", json={"goal": "y"})
    assert spent.status_code == 429
    assert error_of(spent)["code"] == "token_budget_exceeded"
    assert int(spent.headers["retry-after"]) >= 1


async def test_a_tenants_model_allow_list_narrows_the_servers(client_for: Client, runtime: Runtime) -> None:
    await runtime.access.set_quotas("a", {"allowed_models": "offline:other"})
    a = await client_for("a", Scope.TASKS_WRITE)
    refused = await a.post("/v1/tasks", json={"goal": "x"})
    assert refused.status_code == 422 and error_of(refused)["code"] == "model_not_allowed"
    assert (await a.post("/v1/tasks", json={"goal": "x", "model": "offline:other"})).status_code == 202


async def test_cors_is_off_unless_origins_are_configured(settings: Settings, runtime: Runtime) -> None:
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
    for origins, allowed in (("", None), ("https://dash.example", "https://dash.example")):
        app = create_app(settings.model_copy(update={"cors_origins": origins}), runtime=runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            response = await http.options("/v1/tasks", headers=preflight)
            other = await http.options("/v1/tasks", headers={**preflight, "Origin": "https://evil.example"})
        assert response.headers.get("access-control-allow-origin") == allowed
        assert "access-control-allow-origin" not in other.headers
        assert "access-control-allow-credentials" not in response.headers
