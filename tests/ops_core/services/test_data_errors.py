"""A value the database refuses is :class:`InvalidData` (422), never an unclassified error (500).

The API's validation keeps these values out; this is the line behind it, for what slips past. Each
value is sent straight to the service or store, bypassing the API, on each backend: where a
backend stores the value happily (SQLite has no 32-bit integers and allows NUL), that is checked too.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from ops_core.config import load_settings
from ops_core.errors import InvalidData, InvalidRequest
from ops_core.runtime import Runtime
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT

SQLITE, POSTGRES = "sqlite", "postgres"
BOTH = {SQLITE, POSTGRES}


@pytest.fixture(params=[SQLITE, pytest.param(POSTGRES, marks=pytest.mark.integration)])
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    url = request.getfixturevalue("sqlite_url" if request.param == SQLITE else "pg_url")
    opened = Runtime.open(load_settings(database_url=url, broker_url="memory://"))
    if request.param == POSTGRES:
        async with opened.engine.begin() as conn:
            await conn.execute(
                text("TRUNCATE tasks, task_events, workers, memories, tenants, api_keys RESTART IDENTITY CASCADE")
            )
    try:
        yield opened
    finally:
        await opened.close()


def backend(runtime: Runtime) -> str:
    return SQLITE if runtime.settings.is_sqlite else POSTGRES


@pytest.mark.parametrize(
    ("fields", "refused_by"),
    [
        ({"goal": "a\u0000b"}, {POSTGRES}),
        ({"input": {"k": "v\u0000"}}, {POSTGRES}),
        ({"input": {"k\u0000": 1}}, {POSTGRES}),
        ({"input": {"n": math.nan}}, {POSTGRES}),
        ({"input": {"n": math.inf}}, {POSTGRES}),
        ({"goal": "\udfff"}, BOTH),
        ({"input": {"s": "\udfff"}}, {POSTGRES}),  # SQLite's JSON text holds it as an escape
        ({"idempotency_key": "k\udfff"}, BOTH),
        ({"timeout_seconds": 2**31}, {POSTGRES}),
        ({"timeout_seconds": 2**63}, BOTH),
        ({"schedule_to_start_seconds": 999_999_999_999}, BOTH),  # now + that is past year 9999
    ],
)
async def test_submit_of_a_value_the_database_refuses_is_invalid_data(
    runtime: Runtime, fields: dict[str, Any], refused_by: set[str]
) -> None:
    submit = {"goal": "x", **fields}

    if backend(runtime) not in refused_by:
        _, created = await runtime.tasks.submit(tenant=DEFAULT_TENANT, **submit)
        assert created
        return
    # InvalidData from the driver, or InvalidRequest where the store sees it first (a date past the calendar).
    with pytest.raises(InvalidRequest) as caught:
        await runtime.tasks.submit(tenant=DEFAULT_TENANT, **submit)
    assert caught.value.status_code == 422
    assert (await runtime.store.list(tenant=EVERY_TENANT, limit=10)).items == []


@pytest.mark.parametrize(("after_seq", "refused_by"), [(2**31, {POSTGRES}), (2**63, BOTH)])
async def test_an_integer_beyond_its_column_is_invalid_data(
    runtime: Runtime, after_seq: int, refused_by: set[str]
) -> None:
    task, _ = await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal="x")

    if backend(runtime) not in refused_by:
        assert await runtime.store.list_events(task.id, after_seq=after_seq, tenant=EVERY_TENANT) == []
        return
    with pytest.raises(InvalidData):
        await runtime.store.list_events(task.id, after_seq=after_seq, tenant=EVERY_TENANT)


def cursor_for(created_at: str) -> str:
    raw = json.dumps([created_at, uuid.uuid4().hex]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
async def test_a_cursor_at_the_edge_of_the_calendar_is_invalid_request(runtime: Runtime, created_at: str) -> None:
    # The store normalises the cursor's time to UTC while decoding it, so both backends refuse it alike.
    with pytest.raises(InvalidRequest, match="malformed cursor"):
        await runtime.store.list(tenant=EVERY_TENANT, cursor=cursor_for(created_at))
