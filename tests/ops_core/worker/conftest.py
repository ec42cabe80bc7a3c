from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import TASKS
from ops_core.db.store import TaskStore
from tests.ops_core.worker.helpers import AGENT


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TaskStore]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url))
    async with engine.begin() as conn:
        await conn.execute(TASKS.delete().where(TASKS.c.agent == AGENT))
    try:
        yield open_store(engine)
    finally:
        await engine.dispose()
