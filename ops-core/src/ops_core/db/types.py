"""Column types that behave the same on PostgreSQL and SQLite.

SQLite has no timezone-aware timestamp and no JSONB, so the models use these
instead of the raw SQLAlchemy types; the migration spells out the same
underlying types, which the drift test checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

# JSONB on PostgreSQL (binary, indexable); plain JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always stored as UTC and always comes back tz-aware.

    PostgreSQL's ``timestamptz`` already does this; SQLite stores naive text,
    so values are normalised to UTC on the way in (which also keeps SQLite's
    text comparisons in WHERE clauses correct) and tagged UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: ops-core only stores timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class json_array_append(FunctionElement[Any]):
    """``column`` with ``item`` appended, computed by the database so no read is needed first."""

    inherit_cache = True
    type = JSONType

    def __init__(self, column: ColumnElement[Any], item: ColumnElement[Any]) -> None:
        super().__init__(column, item)


@compiles(json_array_append, "postgresql")
def _append_pg(element: json_array_append, compiler: SQLCompiler, **kw: Any) -> str:
    column, item = element.clauses
    return f"({compiler.process(column, **kw)} || jsonb_build_array({compiler.process(item, **kw)}))"


@compiles(json_array_append, "sqlite")
def _append_sqlite(element: json_array_append, compiler: SQLCompiler, **kw: Any) -> str:
    column, item = element.clauses
    return f"json_insert({compiler.process(column, **kw)}, '$[#]', json({compiler.process(item, **kw)}))"
