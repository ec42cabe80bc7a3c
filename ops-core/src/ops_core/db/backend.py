"""Picks the store backend for an engine's database."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ops_core.db.postgres import PostgresStore
from ops_core.db.sqlite import SqliteStore
from ops_core.db.store import TaskStore
from ops_core.lifecycle import RetryPolicy


def open_store(engine: AsyncEngine, *, policy: RetryPolicy | None = None) -> TaskStore:
    if engine.dialect.name == "postgresql":
        return PostgresStore(engine, policy=policy)
    if engine.dialect.name == "sqlite":
        return SqliteStore(engine, policy=policy)
    raise ValueError(f"no store backend for {engine.dialect.name}")
