"""The async engine factory and the one place database failures are classified.

Connection failures and timeouts become :class:`DatabaseUnavailable` (503); a
value the database or its driver refuses becomes :class:`InvalidData` (422).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any

import asyncpg
import asyncpg.exceptions._base as asyncpg_client
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from ops_core.config import Settings
from ops_core.errors import DatabaseUnavailable, InvalidData

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution option marking a connection that only reads: on SQLite it gets a
# deferred BEGIN instead of BEGIN IMMEDIATE, so readers never queue behind writers.
READ_ONLY = "opscore_read_only"


def _json_default(value: object) -> object:
    # Event payloads carry timestamps and ids straight from agentkit's models.
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        return _sqlite_engine(settings)
    return _postgres_engine(settings)


def _postgres_engine(settings: Settings) -> AsyncEngine:
    timeout = settings.db_timeout_seconds
    return create_async_engine(
        settings.database_url,
        json_serializer=json_dumps,
        pool_size=settings.db_pool_size,
        # db_pool_size is a hard cap so operators can size max_connections as processes × pool size.
        max_overflow=0,
        # No pre-ping: it costs a round trip per checkout, i.e. per statement on the hot path. A
        # connection broken by a restart fails its statement instead; that surfaces as
        # DatabaseUnavailable, which every caller already retries, and the pool discards it.
        pool_recycle=1800,
        connect_args={
            "timeout": timeout,  # connecting to a dead host fails after this, not after the OS's minutes
            "command_timeout": timeout,  # client side: a hung server or network
            # server side: a query stuck on locks is cancelled instead of holding its connection
            "server_settings": {"statement_timeout": str(int(timeout * 1000)), "application_name": "ops-core"},
        },
    )


def _sqlite_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        json_serializer=json_dumps,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (below) issue BEGIN itself instead of the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer and vice versa
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL + NORMAL survives an application crash; only an OS crash can lose the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes cannot wait for the
        # write lock (SQLITE_BUSY at once, "database is locked"); taking the
        # lock up front makes concurrent writers queue on busy_timeout instead.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# The one list of what tells a dead or unreachable database apart from a bug in a statement. Both
# backends' errors come through here: SQLAlchemy's wrappers, and asyncpg's own on raw connections.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    exc.TimeoutError,  # no pool connection became free in time
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.InterfaceError,
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


# A value the database cannot take: out of its column's range, text it cannot hold (NUL, a lone surrogate),
# a date past the calendar's edge. Checked before _CONNECTION_ERRORS: asyncpg's client-side DataError is an
# InterfaceError, which would otherwise read as a broken connection.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    exc.DataError,
    asyncpg.exceptions.DataError,  # SQLSTATE class 22: NumericValueOutOfRange, UntranslatableCharacter, ...
    asyncpg_client.DataError,  # refused while encoding an argument, e.g. an int beyond int32
    sqlite3.DataError,
    OverflowError,  # a Python int too large for SQLite, or datetime arithmetic past year 9999
    UnicodeEncodeError,  # a lone surrogate sent to SQLite
)


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the driver's exceptions under SQLAlchemy's wrapper (and its adapter's)."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(chain) < 4:
        chain.append(seen)
        seen = seen.orig if isinstance(seen, exc.StatementError) else seen.__cause__
    return chain


def is_data_error(error: BaseException) -> bool:
    """Whether ``error`` is the database (or its driver) refusing a value: the caller's input, not an outage."""
    return any(isinstance(seen, _DATA_ERRORS) for seen in _causes(error))


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached or did not answer in time."""
    if is_data_error(error):
        return False
    if isinstance(error, exc.DBAPIError) and (
        error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError)
    ):
        return True
    return any(isinstance(seen, _CONNECTION_ERRORS) for seen in _causes(error))


@asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """Turn connection failures and timeouts into :class:`DatabaseUnavailable` (the API answers 503),
    and values the database refuses into :class:`InvalidData` (422): the one place both backends'
    driver errors are classified."""
    try:
        yield
    except Exception as error:
        if is_data_error(error):
            raise InvalidData(f"the database refused a value: {_describe(error)}") from error
        if is_unavailable(error):
            raise DatabaseUnavailable(f"database unavailable: {_describe(error)}") from error
        raise


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """The driver's own connection (asyncpg's) of a pooled connection, in autocommit (no BEGIN/COMMIT).

    A raw pool checkout, without SQLAlchemy's ``Connection`` around it: that
    wrapper and its events cost about as much CPU as a hot statement itself.
    """
    async with database_errors():
        pooled = await engine.raw_connection()
        try:
            yield pooled.driver_connection
        except Exception as error:
            if is_unavailable(error):
                # The pool cannot see a failure on the driver connection: drop it so it is not reused.
                await greenlet_spawn(pooled.invalidate, error)
            raise
        finally:
            if pooled.dbapi_connection is not None:  # an invalidated connection is already back in the pool
                # Returning it may run the pool's reset, which awaits on the driver: that needs a greenlet.
                await greenlet_spawn(pooled.close)


@asynccontextmanager
async def read_only(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only: SQLite then skips the write lock a transaction takes (see READ_ONLY)."""
    async with database_errors(), engine.connect() as conn:
        await conn.execution_options(**{READ_ONLY: True})
        yield conn


def _describe(error: BaseException) -> str:
    if isinstance(error, exc.StatementError) and error.orig is not None:
        error = error.orig
    return f"{type(error).__name__}: {error}".strip().rstrip(":")
