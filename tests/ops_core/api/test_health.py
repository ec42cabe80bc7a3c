"""Liveness, readiness (bounded, naming what failed) and the per-app Prometheus metrics."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from ops_core.api.app import create_app
from ops_core.config import Settings, load_settings
from ops_core.db import migrate
from ops_core.runtime import Runtime
from tests.ops_core.api.conftest import DEAD_DATABASE_URL
from tests.support import services


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    runtime = Runtime.open(settings)
    app = create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield http
    await runtime.close()


async def test_healthz_is_ok_without_touching_dependencies() -> None:
    # Neither the database nor the broker exists: liveness must not care.
    settings = load_settings(database_url=DEAD_DATABASE_URL, broker_url="amqp://127.0.0.1:1/")
    async with serve(settings) as http:
        response = await http.get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_database_and_broker_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


async def test_readyz_is_503_naming_the_database() -> None:
    settings = load_settings(database_url=DEAD_DATABASE_URL)
    async with serve(settings) as http:
        response = await http.get("/readyz")

        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["broker"] == "ok"
        assert body["checks"]["database"] != "ok"


async def test_readyz_is_503_naming_the_broker(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}", broker_url="amqp://127.0.0.1:1/"
    )
    await migrate.upgrade_async(settings)
    async with serve(settings) as http:
        response = await http.get("/readyz")

        assert response.status_code == 503
        assert response.json()["checks"]["database"] == "ok"
        assert "127.0.0.1:1" in response.json()["checks"]["broker"]


@contextmanager
def silent_broker() -> Iterator[tuple[str, socket.socket]]:
    """A port that completes the TCP handshake (the kernel does) and then never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}/%2F", listener


def pending_connections(listener: socket.socket) -> int:
    listener.setblocking(False)
    count = 0
    while count < 1000:
        try:
            listener.accept()[0].close()
        except BlockingIOError:
            return count
        count += 1
    return count


async def test_readyz_never_hangs_on_a_silent_dependency(tmp_path: Path, runtime: Runtime) -> None:
    with silent_broker() as (url, _):
        settings = load_settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}", broker_url=url, db_timeout_seconds=0.05
        )
        app = create_app(settings, runtime=runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "no answer within 0.05s"}


async def test_a_storm_of_readiness_probes_logs_in_to_the_broker_once(tmp_path: Path, runtime: Runtime) -> None:
    with silent_broker() as (url, listener):
        settings = load_settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}", broker_url=url, db_timeout_seconds=0.2
        )
        app = create_app(settings, runtime=runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            responses = await asyncio.gather(*(http.get("/readyz") for _ in range(20)))

        assert {response.status_code for response in responses} == {503}
        # Each login is one TCP connection: the probes arrived together, well within the time an answer is kept.
        assert pending_connections(listener) == 1


@pytest.mark.integration
async def test_readyz_logs_in_to_the_real_broker(tmp_path: Path, runtime: Runtime) -> None:
    good = services.require("RabbitMQ", services.amqp_url())
    parts = urlsplit(good)
    host = parts.netloc.rpartition("@")[2]
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username or 'guest'}:not-the-password@{host}"))
    database = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"

    for url, status in ((wrong, 503), (good, 200)):
        app = create_app(load_settings(database_url=database, broker_url=url), runtime=runtime)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            response = await http.get("/readyz")

        assert response.status_code == status, response.json()
        broker = response.json()["checks"]["broker"]
        if status == 503:
            assert "OPSCORE_BROKER_URL" in broker and "ACCESS_REFUSED" in broker
            assert "not-the-password" not in broker
        else:
            assert broker == "ok"


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    task = (await client.post("/v1/tasks", json={"goal": "x"})).json()
    await client.get(f"/v1/tasks/{task['id']}")
    await client.get("/v1/tasks/not-a-uuid")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'opscore_http_requests_total{method="POST",route="/v1/tasks",status="202"} 1.0' in text
    assert 'opscore_http_requests_total{method="GET",route="/v1/tasks/{task_id}",status="200"} 1.0' in text
    assert 'opscore_http_requests_total{method="GET",route="/v1/tasks/{task_id}",status="422"} 1.0' in text
    assert 'opscore_tasks_submitted_total{agent="default"} 1.0' in text
    assert "opscore_http_request_duration_seconds_bucket" in text


async def test_idempotent_repeats_are_not_counted_as_submissions(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.post("/v1/tasks", json={"goal": "x", "idempotency_key": "k"})

    text = (await client.get("/metrics")).text

    assert 'opscore_tasks_submitted_total{agent="default"} 1.0' in text


async def test_each_app_has_its_own_metrics(settings: Settings, runtime: Runtime) -> None:
    first, second = create_app(settings, runtime=runtime), create_app(settings, runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as a:
        await a.get("/healthz")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b") as b:
        text = (await b.get("/metrics")).text

    assert 'route="/healthz"' not in text


async def test_openapi_documents_the_v1_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert {"/v1/tasks", "/v1/tasks/{task_id}", "/v1/tasks/{task_id}/events", "/v1/workers"} <= set(schema["paths"])
    assert (await client.get("/docs")).status_code == 200


async def test_docs_load_swagger_ui_from_the_api_itself(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert assets, page
    for asset in assets:
        assert asset.startswith("/docs/assets/"), f"{asset} is not served by the API"
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert response.content
    assert "swagger-ui-bundle.js" in " ".join(assets)
    assert "'/openapi.json'" in page
    assert "//" not in " ".join(assets)
    assert (await client.get("/redoc")).status_code == 404  # ReDoc would load from a CDN


def test_the_lifespan_opens_and_closes_its_own_runtime(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    migrate.upgrade(settings)
    # Auth is not what this is about; disabled, a request outside the lifespan reaches the runtime check.
    settings = settings.model_copy(update={"auth": "disabled"})
    app = create_app(settings)
    # Outside the lifespan there is nothing to serve with: 503, not a crash.
    with TestClient(app) as outside_client:
        pass
    assert app.state.runtime is None

    with TestClient(app) as http:
        assert isinstance(app.state.runtime, Runtime)
        assert http.get("/readyz").status_code == 200
        assert http.post("/v1/tasks", json={"goal": "x"}).status_code == 202
    assert app.state.runtime is None
    assert outside_client.get("/v1/tasks").status_code == 503
