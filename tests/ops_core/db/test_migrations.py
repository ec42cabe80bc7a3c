from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import ops_core.db.models  # noqa: F401 - the tables under test
from ops_core.db import migrate
from tests.support import services

REPO_ROOT = Path(__file__).resolve().parents[3]
TABLES = {
    "tasks",
    "task_events",
    "workers",
    "memories",
    "tenants",
    "api_keys",
    "approvals",
    "rate_limits",
    "sessions",
    "webhook_secrets",
    "webhook_deliveries",
    "webhook_attempts",
    "schedules",
    "schedule_pending_ticks",
    "workflows",
    "workflow_steps",
    "remote_agents",
    "remote_runs",
    "remote_callbacks",
    "alembic_version",
}


def _inspect(url: str, fn: object) -> object:
    async def run() -> object:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)  # type: ignore[arg-type]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _tables(url: str) -> set[str]:
    return set(_inspect(url, lambda conn: inspect(conn).get_table_names()))  # type: ignore[call-overload]


@pytest.fixture
def fresh_pg_url(pg_admin_url: str) -> Iterator[str]:
    url = services.create_database(pg_admin_url)
    try:
        yield url
    finally:
        services.drop_database(pg_admin_url, url)


def _round_trip(url: str) -> None:
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head() and _tables(url) == TABLES
    migrate.downgrade(url)
    assert migrate.current(url) is None and _tables(url) == {"alembic_version"}
    migrate.upgrade(url, "head")
    assert migrate.current(url) == migrate.head()


def test_round_trip_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path.parent)  # the programmatic config must not depend on the cwd
    _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")


@pytest.mark.integration
def test_round_trip_postgres(fresh_pg_url: str) -> None:
    _round_trip(fresh_pg_url)


@pytest.mark.integration
def test_models_match_migrations(pg_url: str) -> None:
    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, SQLModel.metadata))

    assert _inspect(pg_url, diff) == []


async def test_upgrade_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'loop.db'}"
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()
    await migrate.downgrade_async(url)
    assert await migrate.current_async(url) is None
    await migrate.upgrade_async(url)


def _alembic(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_alembic_cli_from_repo_root(tmp_path: Path) -> None:
    # One subprocess only (a cold interpreter + SQLAlchemy import takes seconds); the URL comes
    # through Settings, the path `alembic upgrade head` takes in deployments. `-x url=…` is the
    # same code path one lookup earlier.
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    result = _alembic("upgrade", "head", env={"OPSCORE_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert migrate.current(url) == migrate.head()
    assert _tables(url) == TABLES
