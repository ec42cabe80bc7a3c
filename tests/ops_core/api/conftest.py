"""An API backed by the real runtime: a SQLite file per test and the in-process broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ops_core.api.app import create_app
from ops_core.config import Settings, load_settings
from ops_core.db import migrate
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT

MAX_BODY_BYTES = 65_536
# Nothing listens on port 1 of the loopback interface: connects are refused at once, as to a dead server.
DEAD_DATABASE_URL = "postgresql+asyncpg://opscore:opscore@127.0.0.1:1/opscore"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        broker_url="memory://",
        max_body_bytes=MAX_BODY_BYTES,
        db_timeout_seconds=2.0,
        default_max_retries=2,
        default_timeout_seconds=120,
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


async def admin_headers(runtime: Runtime) -> dict[str, str]:
    """Headers with a new admin key of the default tenant (admin has every scope)."""
    _, secret = await runtime.access.create_key(tenant=DEFAULT_TENANT, scopes=[Scope.ADMIN], name="tests")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def admin_key(runtime: Runtime) -> str:
    """The secret of an admin key of the default tenant."""
    return (await admin_headers(runtime))["Authorization"].removeprefix("Bearer ")


@pytest.fixture
async def client(app: FastAPI, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends the admin key: the tests of what routes do, not of who may call them."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    ) as http:
        yield http


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no key."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield http
