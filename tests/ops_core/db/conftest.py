from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import EVENTS
from ops_core.db.store import TaskStore
from ops_core.lifecycle import TRANSITIONS


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TaskStore]:
    """A TaskStore on an empty, migrated database of each backend."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url, db_pool_size=20))
    if request.param == "postgres":
        # One database per run; emptying it is much quicker than migrating a new one per test.
        async with engine.begin() as conn:
            await conn.execute(
                text("TRUNCATE tasks, task_events, workers, memories, tenants, api_keys RESTART IDENTITY CASCADE")
            )
    try:
        yield open_store(engine)
        await assert_active_index_invariant(engine)
        await assert_every_status_event_is_a_transition(engine)
    finally:
        await engine.dispose()


async def assert_active_index_invariant(engine: AsyncEngine) -> None:
    """ix_tasks_active finds unfinished tasks (pending, running, waiting) as ``finished_at IS NULL``:
    every transition must keep that."""
    async with engine.connect() as conn:
        broken = await conn.scalar(
            text(
                "SELECT count(*) FROM tasks"
                " WHERE (status IN ('pending', 'running', 'waiting')) <> (finished_at IS NULL)"
            )
        )
    assert broken == 0, f"{broken} tasks whose finished_at disagrees with their status"


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[TaskStore]:
    """PostgreSQL only, for what SQLite cannot show (real row-level concurrency)."""
    engine = create_engine(Settings(database_url=pg_url, db_pool_size=20))
    async with engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE tasks, task_events, workers, memories, tenants, api_keys RESTART IDENTITY CASCADE")
        )
    try:
        yield open_store(engine)
    finally:
        await engine.dispose()


async def assert_every_status_event_is_a_transition(engine: AsyncEngine) -> None:
    """Whatever a test did, every status event it left names a move in the lifecycle's table."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(EVENTS.c.payload).where(EVENTS.c.type == "status"))).scalars().all()
    moves = {(p["from"], p["to"]) for p in rows}
    allowed = {(a.value, b.value) for a, b in TRANSITIONS} | {(None, "pending")}
    assert moves <= allowed, f"status events outside the lifecycle's table: {moves - allowed}"
