from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from ops_core.config import Settings
from ops_core.db.engine import create_engine
from ops_core.db.store import TaskStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TaskStore]:
    """A TaskStore on an empty, migrated database of each backend."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url, db_pool_size=20))
    if request.param == "postgres":
        # One database per run; emptying it is much quicker than migrating a new one per test.
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE tasks, task_events, workers, memories RESTART IDENTITY CASCADE"))
    try:
        yield TaskStore(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[TaskStore]:
    """PostgreSQL only, for what SQLite cannot show (real row-level concurrency)."""
    engine = create_engine(Settings(database_url=pg_url, db_pool_size=20))
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE tasks, task_events, workers, memories RESTART IDENTITY CASCADE"))
    try:
        yield TaskStore(engine)
    finally:
        await engine.dispose()
