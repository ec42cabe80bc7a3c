"""The baselines' task table and the two status writes every baseline task does.

It holds what ops-core's ``tasks`` row minimally needs for the same guarantees:
a status moved by conditional UPDATEs, and the times dispatch latency is read from.
"""

from __future__ import annotations

import asyncpg

CREATE = """
CREATE TABLE IF NOT EXISTS bench_tasks (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS bench_counter (id int PRIMARY KEY, n bigint NOT NULL);
"""
RESET = "TRUNCATE bench_tasks RESTART IDENTITY; DELETE FROM bench_counter; INSERT INTO bench_counter VALUES (1, 0)"
FILL = "INSERT INTO bench_tasks (status) SELECT 'pending' FROM generate_series(1, $1)"
INSERT_ONE = "INSERT INTO bench_tasks (status) VALUES ('pending') RETURNING id"

# Conditional, like ops-core's claim and finish: a duplicate delivery changes nothing.
MARK_RUNNING = (
    "UPDATE bench_tasks SET status = 'running', started_at = clock_timestamp() WHERE id = %s AND status = 'pending'"
)
MARK_COMPLETED = (
    "UPDATE bench_tasks SET status = 'completed', finished_at = clock_timestamp() WHERE id = %s AND status = 'running'"
)

COUNT_COMPLETED = "SELECT count(*) FROM bench_tasks WHERE status = 'completed'"
COUNTER = "SELECT n FROM bench_counter WHERE id = 1"
ADD_TO_COUNTER = "UPDATE bench_counter SET n = n + %s WHERE id = 1"

DISPATCH_SECONDS = """
SELECT extract(epoch FROM started_at - created_at)::float8 AS dispatch,
       extract(epoch FROM finished_at - created_at)::float8 AS total
FROM bench_tasks WHERE status = 'completed'
"""


def numbered(sql: str) -> str:
    """asyncpg's placeholders ($1) from psycopg's (%s); the statements are written once for both drivers."""
    return sql.replace("%s", "$1")


async def reset(dsn: str, backlog: int = 0) -> None:
    """An empty table (ids restart at 1), with ``backlog`` pending rows numbered 1..backlog."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CREATE)
        await conn.execute(RESET)
        if backlog:
            await conn.execute(FILL, backlog)
    finally:
        await conn.close()


async def dispatch_seconds(dsn: str) -> tuple[list[float], list[float]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(DISPATCH_SECONDS)
    finally:
        await conn.close()
    return [row["dispatch"] for row in rows], [row["total"] for row in rows]
