"""Hand-written SQL for the statements every task runs, on PostgreSQL.

Each task is created, marked published, claimed and completed (with checkpoints
between steps of a longer run). Building those statements with SQLAlchemy Core
and computing their cache keys cost more CPU than PostgreSQL spends running
them (see the profile in docs/benchmarks.md), and a worker's event loop is one
core. So
these few statements are plain SQL, prepared once per connection by asyncpg
and run on the driver connection under SQLAlchemy's pool; everything else, and
all of SQLite, goes through SQLAlchemy.

Each statement is one round trip: a conditional UPDATE (or the INSERT) whose
RETURNING feeds a data-modifying CTE that inserts the events, numbered from
the seq the UPDATE reserved. The claim and the completion, which every task
runs, take arrays: the store sends the ones that arrive together as one
statement (see batch.py). JSONB parameters are JSON text: the dialect
installs a codec on these connections that encodes text and decodes values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from ops_core.db.engine import database_errors, json_dumps
from ops_core.db.models import NewEvent
from ops_core.errors import DatabaseUnavailable

_EVENTS = """
added AS (
    INSERT INTO task_events (task_id, seq, attempt, type, payload, created_at)
    SELECT bumped.id, bumped.last_event_seq - {count} + item.ord, {attempt},
           item.value->>'type', item.value->'payload', (item.value->>'created_at')::timestamptz
    FROM bumped, jsonb_array_elements({events}::jsonb) WITH ORDINALITY AS item(value, ord)
)"""

INSERT_TASK = (
    """
WITH bumped AS (
    INSERT INTO tasks (id, agent, goal, input, model, status, attempts, max_retries, retry_base, timeout_seconds,
                       schedule_to_start_seconds, start_deadline, priority, idempotency_key, input_tokens,
                       output_tokens, reused_tokens, attempt_errors, cancel_requested, last_event_seq,
                       created_at, updated_at)
    VALUES ($1, $2, $3, $4::jsonb, $5, 'pending', 0, $6, 0, $7, $8, $9, $10, $11, 0, 0, 0, '[]'::jsonb, false,
            1, $12, $12)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING *
),"""
    + _EVENTS.format(count="1", attempt="0", events="$13")
    + """
SELECT * FROM bumped"""
)

# Both statements every task runs take a batch (see batch.py); one id per element, in id order so
# concurrent batches lock rows in one order.
CLAIM = """
WITH bumped AS (
    UPDATE tasks SET status = 'running', attempts = attempts + 1, last_event_seq = last_event_seq + 1,
                     started_at = COALESCE(started_at, $2), claimed_at = $2, worker_id = $3, updated_at = $2
    WHERE id = ANY($1::uuid[]) AND status = 'pending'
      AND (start_deadline IS NULL OR attempts > 0 OR start_deadline >= $2)
    RETURNING *
),
added AS (
    INSERT INTO task_events (task_id, seq, attempt, type, payload, created_at)
    SELECT id, last_event_seq, attempts, 'status', $4::jsonb || jsonb_build_object('attempt', attempts), $2
    FROM bumped
)
SELECT * FROM bumped"""

COMPLETE = (
    """
WITH done AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $6::text[], $7::int[], $8::int[], $9::int[])
        AS d(id, attempt, n, events, result, input_tokens, output_tokens, reused_tokens)
),
bumped AS (
    UPDATE tasks SET last_event_seq = tasks.last_event_seq + done.n, updated_at = $5, status = 'completed',
                     worker_id = NULL, finished_at = $5, result = done.result::jsonb,
                     input_tokens = tasks.input_tokens + done.input_tokens,
                     output_tokens = tasks.output_tokens + done.output_tokens,
                     reused_tokens = tasks.reused_tokens + done.reused_tokens
    FROM done
    WHERE tasks.id = done.id AND tasks.status = 'running' AND tasks.attempts = done.attempt
    RETURNING tasks.id, tasks.last_event_seq, done.n, done.attempt, done.events
),"""
    + _EVENTS.format(count="bumped.n", attempt="bumped.attempt", events="bumped.events")
    + """
SELECT id, attempt FROM bumped"""
)

# While the attempt still owns the task: events, plus what a step or the end changes.
_FENCED = (
    """
WITH bumped AS (
    UPDATE tasks SET last_event_seq = last_event_seq + $3, updated_at = $5{assignments}
    WHERE id = $1 AND status = 'running' AND attempts = $2
    RETURNING id, last_event_seq
),"""
    + _EVENTS.format(count="$3", attempt="$2", events="$4")
    + """
SELECT last_event_seq FROM bumped"""
)

APPEND = _FENCED.format(assignments="")
CHECKPOINT = _FENCED.format(
    assignments=", checkpoint = $6::jsonb, input_tokens = input_tokens + $7, output_tokens = output_tokens + $8"
)

# The outbox: sent, unless a worker claimed it meanwhile. With $3 NULL only never-published rows match.
MARK_PUBLISHED = """
UPDATE tasks SET published_at = $2
WHERE id = ANY($1::uuid[]) AND status = 'pending' AND (published_at IS NULL OR published_at < $3)"""

# What tells a dead or unreachable database apart from a bug in a statement.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
)


def events_json(events: Sequence[NewEvent], now: datetime) -> str:
    return json_dumps(
        [{"type": e.type, "payload": e.payload, "created_at": (e.created_at or now).isoformat()} for e in events]
    )


@asynccontextmanager
async def driver(engine: AsyncEngine) -> AsyncIterator[Any]:
    """The asyncpg connection of a pooled connection, in autocommit (no BEGIN/COMMIT).

    A raw pool checkout, without SQLAlchemy's ``Connection`` around it: that
    wrapper and its events cost about as much CPU as the statement itself.
    """
    async with database_errors():
        pooled = await engine.raw_connection()
    try:
        yield pooled.driver_connection
    except _UNAVAILABLE as error:
        # The pool cannot see a failure on the driver connection: drop it so it is not reused.
        await greenlet_spawn(pooled.invalidate, error)
        raise DatabaseUnavailable(f"database unavailable: {type(error).__name__}: {error}") from error
    finally:
        if pooled.dbapi_connection is not None:  # an invalidated connection is already back in the pool
            # Returning it may run the pool's reset, which awaits on the driver: that needs SQLAlchemy's greenlet.
            await greenlet_spawn(pooled.close)
