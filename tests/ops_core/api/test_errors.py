"""Every error is ``{"error": {"code", "message"}}`` with the right status; a client's mistake is never a 500."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ops_core.api.app import create_app
from ops_core.api.deps import get_store
from ops_core.config import Settings, load_settings
from ops_core.db.sqlite import SqliteStore
from ops_core.keys import new_secret
from ops_core.runtime import Runtime
from ops_core.tenancy import TenantScope
from tests.ops_core.api.conftest import DEAD_DATABASE_URL, admin_headers


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    error: dict[str, Any] = body["error"]
    return error


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")

    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "no route for GET /v1/nothing-here"}


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/tasks")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/v1/tasks/not-a-uuid", "/v1/tasks/123/events", "/v1/tasks/x/cancel"])
async def test_malformed_id_is_422_naming_the_path_field(client: httpx.AsyncClient, path: str) -> None:
    method = "POST" if path.endswith("cancel") else "GET"
    response = await client.request(method, path)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert "path field 'task_id'" in error["message"]


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tasks", content=b'{"goal": "x",', headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert error_of(response)["message"].startswith("malformed JSON body")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "goal"),
        ({"goal": ""}, "goal"),
        ({"goal": "   "}, "goal"),
        ({"goal": "x" * 20_001}, "goal"),
        ({"goal": "x", "input": [1, 2]}, "input"),
        ({"goal": "x", "input": "text"}, "input"),
        ({"goal": "x", "priority": 10}, "priority"),
        ({"goal": "x", "priority": -1}, "priority"),
        ({"goal": "x", "max_retries": 101}, "max_retries"),
        ({"goal": "x", "timeout_seconds": 0}, "timeout_seconds"),
        ({"goal": "x", "schedule_to_start_seconds": -5}, "schedule_to_start_seconds"),
        ({"goal": "x", "idempotency_key": "k" * 201}, "idempotency_key"),
        ({"goal": "x", "agent": ""}, "agent"),
        ({"goal": "x", "surprise": True}, "surprise"),
    ],
)
async def test_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/tasks", json=body)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert f"'{field}'" in error["message"]


async def test_body_that_is_not_an_object_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tasks", json=["goal"])

    assert response.status_code == 422


async def test_unknown_agent_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tasks", json={"goal": "x", "agent": "ghost"})

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "unknown_agent"
    assert "ghost" in error["message"]


@pytest.mark.parametrize("model", ["nosuch:model-1", "no-provider-prefix", "openai:"])
async def test_unknown_model_provider_is_422(client: httpx.AsyncClient, model: str) -> None:
    response = await client.post("/v1/tasks", json={"goal": "x", "model": model})

    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_model"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "many"}, "limit"),
    ],
)
async def test_invalid_list_query_is_422(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    response = await client.get("/v1/tasks", params=params)

    assert response.status_code == 422
    assert f"query field '{field}'" in error_of(response)["message"]


@pytest.mark.parametrize("cursor", ["garbage", "eyJub3QiOiAiYSBjdXJzb3IifQ==", "%%%"])
async def test_malformed_cursor_is_422(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/v1/tasks", params={"cursor": cursor})

    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_request"


async def test_negative_after_seq_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/tasks/{uuid.uuid4()}/events", params={"after_seq": -1})

    assert response.status_code == 422


# --- dependencies down -------------------------------------------------------


@pytest.fixture
async def unreachable_db_client() -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(database_url=DEAD_DATABASE_URL)
    runtime = Runtime.open(settings)
    app = create_app(settings, runtime=runtime)
    # A well-formed key: whether it is valid cannot be known without the database.
    headers = {"Authorization": f"Bearer {new_secret().secret}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    ) as http:
        yield http
    await runtime.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/tasks/{uuid.uuid4()}"),
        ("GET", "/v1/tasks"),
        ("POST", f"/v1/tasks/{uuid.uuid4()}/cancel"),
        ("GET", "/v1/workers"),
    ],
)
async def test_database_unavailable_is_503(unreachable_db_client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await unreachable_db_client.request(method, path)

    assert response.status_code == 503
    assert error_of(response)["code"] == "database_unavailable"
    assert response.headers["retry-after"]


async def test_submit_with_database_unavailable_is_503(unreachable_db_client: httpx.AsyncClient) -> None:
    response = await unreachable_db_client.post("/v1/tasks", json={"goal": "x"})

    assert response.status_code == 503


class HangingStore(SqliteStore):
    """A store whose database never answers (a black-holed connection)."""

    async def get(self, task_id: uuid.UUID, *, tenant: TenantScope) -> Any:
        await asyncio.Event().wait()


async def test_a_hanging_database_is_503_within_the_deadline(tmp_path: Path, runtime: Runtime) -> None:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}", db_timeout_seconds=0.05)
    app = create_app(settings, runtime=runtime)
    app.dependency_overrides[get_store] = lambda: HangingStore(runtime.engine)
    headers = await admin_headers(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    ) as http:
        response = await http.get(f"/v1/tasks/{uuid.uuid4()}")

    assert response.status_code == 503
    assert error_of(response)["code"] == "database_unavailable"


async def test_submit_survives_an_unreachable_broker(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}", broker_url="amqp://127.0.0.1:1/"
    )
    from ops_core.db import migrate

    await migrate.upgrade_async(settings)
    runtime = Runtime.open(settings)
    app = create_app(settings, runtime=runtime)
    headers = await admin_headers(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    ) as http:
        response = await http.post("/v1/tasks", json={"goal": "x"})
        stored = await http.get(f"/v1/tasks/{response.json()['id']}")
    await runtime.close()

    # Accepted and stored; the relay publishes it once the broker is back.
    assert response.status_code == 202
    assert stored.json()["status"] == "pending"


# --- unexpected failures -----------------------------------------------------


class BrokenStore(SqliteStore):
    async def get(self, task_id: uuid.UUID, *, tenant: TenantScope) -> Any:
        raise RuntimeError("secret internals")


async def test_unexpected_error_is_a_generic_500_and_logged(
    settings: Settings, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    app: FastAPI = create_app(settings, runtime=runtime)
    app.dependency_overrides[get_store] = lambda: BrokenStore(runtime.engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = await admin_headers(runtime)
    with caplog.at_level(logging.ERROR, logger="ops_core.api.errors"):
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as http:
            response = await http.get(f"/v1/tasks/{uuid.uuid4()}")

    assert response.status_code == 500
    assert error_of(response) == {"code": "internal_error", "message": "internal server error"}
    assert "secret internals" not in response.text
    assert any("secret internals" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
