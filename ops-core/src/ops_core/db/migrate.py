"""Schema migrations as functions, for the CLI (``opscore db …``), the app and the tests.

Built on Alembic's command API with a Config made in code, so it needs no
``alembic.ini`` and works from any directory and from an installed wheel.
Alembic's env.py drives an async engine with ``asyncio.run``, which cannot
nest inside a running event loop; so when called from async code the work
runs in a helper thread (or use the ``*_async`` variants).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ops_core.config import Settings

SCRIPT_LOCATION = "ops_core.db:migrations"

T = TypeVar("T")


def make_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def _url(target: Settings | str) -> str:
    return target.database_url if isinstance(target, Settings) else target


def _outside_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` here, or in a fresh thread if this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="opscore-migrate")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def upgrade(target: Settings | str, revision: str = "head") -> None:
    config = make_config(_url(target))
    _outside_loop(lambda: command.upgrade(config, revision))


def downgrade(target: Settings | str, revision: str = "base") -> None:
    config = make_config(_url(target))
    _outside_loop(lambda: command.downgrade(config, revision))


def head() -> str | None:
    """The newest revision this code knows about."""
    return ScriptDirectory.from_config(make_config("")).get_current_head()


def current(target: Settings | str) -> str | None:
    """The revision the database is at (None for an empty database)."""

    def revision(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async def read() -> str | None:
        engine = create_async_engine(_url(target), poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(revision)
        finally:
            await engine.dispose()

    return _outside_loop(lambda: asyncio.run(read()))


async def upgrade_async(target: Settings | str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, target, revision)


async def downgrade_async(target: Settings | str, revision: str = "base") -> None:
    await asyncio.to_thread(downgrade, target, revision)


async def current_async(target: Settings | str) -> str | None:
    return await asyncio.to_thread(current, target)
