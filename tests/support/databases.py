"""Database fixtures for any suite: a migrated PostgreSQL database per run, a migrated SQLite file per test.

The schema always comes from the Alembic migrations, never ``create_all``, so
every test also exercises the migrations. Import the fixtures into a conftest.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops_core.db import migrate
from tests.support import services


@pytest.fixture(scope="session")
def service_urls() -> Iterator[services.ServiceUrls]:
    """PostgreSQL (admin URL) and RabbitMQ URLs; compose containers when Docker is how they are found."""
    with services.discover() as urls:
        yield urls


@pytest.fixture(scope="session")
def pg_admin_url(service_urls: services.ServiceUrls) -> str:
    """The admin (maintenance-database) URL; skips, or fails in CI, when PostgreSQL is unreachable."""
    return services.require("PostgreSQL", service_urls.postgres)


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database for this test run at ``alembic upgrade head``; dropped at the end."""
    url = services.create_database(pg_admin_url)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        services.drop_database(pg_admin_url, url)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own (a copy of one migrated once per run)."""
    path = tmp_path / "opscore.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"
