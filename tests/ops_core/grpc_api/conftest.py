"""A gRPC server on the REST app's own objects (a SQLite file per test, the in-process broker), and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI

from ops_core.api.app import create_app
from ops_core.config import Settings, load_settings
from ops_core.db import migrate
from ops_core.grpc_api import taskservice_pb2_grpc
from ops_core.grpc_api.server import GrpcServer, backend_of, start_grpc
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT

Metadata = tuple[tuple[str, str], ...]


def bearer(secret: str) -> Metadata:
    return (("authorization", f"Bearer {secret}"),)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'grpc.db'}",
        broker_url="memory://",
        db_timeout_seconds=2.0,
        default_max_retries=2,
        default_timeout_seconds=120,
        stream_poll_seconds=0.05,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    await migrate.upgrade_async(settings)
    opened = Runtime.open(settings)
    yield opened
    await opened.close()


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> FastAPI:
    return create_app(settings, runtime=runtime)


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[GrpcServer]:
    started = await start_grpc(backend_of(app), host="127.0.0.1", port=0)
    yield started
    await started.stop()


@pytest.fixture
async def channel(server: GrpcServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Any:
    return taskservice_pb2_grpc.TaskServiceStub(channel)


async def new_key(runtime: Runtime, tenant: str = DEFAULT_TENANT, *scopes: Scope) -> str:
    _, secret = await runtime.access.create_key(tenant=tenant, scopes=list(scopes or (Scope.ADMIN,)), name="tests")
    return secret


@pytest.fixture
async def admin(runtime: Runtime) -> Metadata:
    """Metadata with a new admin key of the default tenant."""
    return bearer(await new_key(runtime))


@pytest.fixture
async def rest(app: FastAPI, admin: Metadata) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API of the same app, with the same admin key: to compare answers."""
    headers = {"Authorization": dict(admin)["authorization"]}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    ) as client:
        yield client
