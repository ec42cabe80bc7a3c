"""``GET /v1/stats``: the overview's figures, per tenant, over HTTP."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from ops_core.db.rules import utcnow
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from tests.ops_core.api.test_auth import Client
from tests.ops_core.api.test_errors import error_of


@pytest.fixture
async def client_for(app: FastAPI, runtime: Runtime) -> AsyncIterator[Client]:
    """Clients with a new key of a tenant: ``await client_for("tenant", Scope.TASKS_READ, ...)``."""
    async with contextlib.AsyncExitStack() as opened:

        async def make(tenant: str, *scopes: Scope) -> httpx.AsyncClient:
            _, secret = await runtime.access.create_key(tenant=tenant, scopes=scopes)
            headers = {"Authorization": f"Bearer {secret}"}
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers)
            return await opened.enter_async_context(client)

        yield make


async def test_stats_are_the_tenants_own_with_every_bucket_of_the_window(client_for: Client) -> None:
    a = await client_for("a", Scope.TASKS_READ, Scope.TASKS_WRITE)
    b = await client_for("b", Scope.TASKS_READ, Scope.TASKS_WRITE)
    for goal in ("x", "y"):
        assert (await a.post("/v1/tasks", json={"goal": goal})).status_code == 202
    assert (await b.post("/v1/tasks", json={"goal": "z"})).status_code == 202

    response = await a.get("/v1/stats")  # default: the last hour, in 5-minute buckets
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["submitted"] == 2 and stats["by_status"] == {"pending": 2}
    assert stats["bucket_seconds"] == 300 and len(stats["buckets"]) == 12
    assert stats["throughput_per_minute"] == 0 and stats["failure_rate"] is None
    assert stats["queue_lag"] == {"started": 0, "avg_seconds": None, "max_seconds": None}

    since = utcnow() - timedelta(minutes=1)
    minute = (await b.get("/v1/stats", params={"since": since.isoformat(), "bucket_seconds": 10})).json()
    assert minute["submitted"] == 1
    window = datetime.fromisoformat(minute["until"]) - since
    # Every bucket from since to until, the last one partial: a minute and a little is 7 of 10 s.
    assert len(minute["buckets"]) == math.ceil(window / timedelta(seconds=10)) == 7
    assert datetime.fromisoformat(minute["buckets"][0]["start"]) == since


async def test_a_bad_window_is_422(client_for: Client) -> None:
    a = await client_for("a", Scope.TASKS_READ)
    naive = await a.get("/v1/stats", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and "timezone" in error_of(naive)["message"]
    week = (utcnow() - timedelta(days=7)).isoformat()
    too_many = await a.get("/v1/stats", params={"since": week, "bucket_seconds": 60})
    assert too_many.status_code == 422 and "bucket_seconds" in error_of(too_many)["message"]
