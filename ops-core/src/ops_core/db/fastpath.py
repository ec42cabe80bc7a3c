"""Hand-written SQL for the statements every task runs, on PostgreSQL.

Each task is created, marked published, claimed and completed (with
checkpoints between steps of a longer run). Building those statements with
SQLAlchemy Core and computing their cache keys cost more CPU than PostgreSQL
spends running them (see the profile in docs/benchmarks.md), and a worker's
event loop is one core. So these few statements are plain SQL, prepared once
per connection by asyncpg and run on the driver connection under SQLAlchemy's
pool; everything else, and all of SQLite, goes through SQLAlchemy.

Each statement is one round trip: a conditional UPDATE (or the INSERT) whose
RETURNING feeds a data-modifying CTE that inserts the events, numbered from
the seq the UPDATE reserved. The claim and the writes fenced by an attempt
(events, checkpoints, completion) take arrays: the store sends the ones that
arrive together as one statement (see batch.py). JSONB parameters are JSON
text: the dialect installs a codec on these connections that encodes text and
decodes values.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from ops_core.db._base import status_event, to_task, utcnow
from ops_core.db.engine import database_errors, json_dumps
from ops_core.db.models import Claim, NewEvent
from ops_core.errors import DatabaseUnavailable
from ops_core.lifecycle import TaskStatus

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

# The claim and the fenced writes take a batch (see batch.py), in id order so that concurrent
# batches lock rows in one order.
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

# While each attempt still owns its task: its events, plus what a step or the end changes.
_FENCED = (
    """
WITH batch AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[]{types}) AS b(id, attempt, n, events{names})
),
bumped AS (
    UPDATE tasks SET last_event_seq = tasks.last_event_seq + batch.n, updated_at = $5{assignments}
    FROM batch
    WHERE tasks.id = batch.id AND tasks.status = 'running' AND tasks.attempts = batch.attempt
    RETURNING tasks.id, tasks.last_event_seq, batch.n, batch.attempt, batch.events
),"""
    + _EVENTS.format(count="bumped.n", attempt="bumped.attempt", events="bumped.events")
    + """
SELECT id, attempt FROM bumped"""
)

APPEND = _FENCED.format(types="", names="", assignments="")
CHECKPOINT = _FENCED.format(
    types=", $6::text[], $7::int[], $8::int[]",
    names=", checkpoint, input_tokens, output_tokens",
    assignments=", checkpoint = batch.checkpoint::jsonb, input_tokens = tasks.input_tokens + batch.input_tokens,"
    " output_tokens = tasks.output_tokens + batch.output_tokens",
)
COMPLETE = _FENCED.format(
    types=", $6::text[], $7::int[], $8::int[], $9::int[]",
    names=", result, input_tokens, output_tokens, reused_tokens",
    assignments=", status = 'completed', worker_id = NULL, finished_at = $5, result = batch.result::jsonb,"
    " input_tokens = tasks.input_tokens + batch.input_tokens, output_tokens = tasks.output_tokens"
    " + batch.output_tokens, reused_tokens = tasks.reused_tokens + batch.reused_tokens",
)

# The outbox: sent, unless a worker claimed it meanwhile. With $3 NULL only never-published rows match.
MARK_PUBLISHED = """
UPDATE tasks SET published_at = $2
WHERE id = ANY($1::uuid[]) AND status = 'pending' AND (published_at IS NULL OR published_at < $3)"""

# Which of a worker's runs have a cancel request.
CANCEL_REQUESTED = """
SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'running' AND cancel_requested"""

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


async def claim(engine: AsyncEngine, requests: Sequence[tuple[uuid.UUID, str]]) -> list[Claim | None]:
    """Claim (task id, worker id) pairs in one statement per worker id (a worker process has one)."""
    now = utcnow()
    wanted: dict[str, set[uuid.UUID]] = {}
    for task_id, worker_id in requests:
        wanted.setdefault(worker_id, set()).add(task_id)
    claimed: dict[tuple[uuid.UUID, str], Claim] = {}
    async with driver(engine) as db:
        for worker_id, ids in wanted.items():
            event = status_event(TaskStatus.PENDING, TaskStatus.RUNNING, "claimed", worker_id=worker_id)
            for record in await db.fetch(CLAIM, sorted(ids), now, worker_id, json_dumps(event.payload)):
                claimed[(record["id"], worker_id)] = Claim(to_task(record), record["attempts"])
    # A task asked for twice in one batch (a duplicate delivery) is claimed once, by the first asker.
    return [claimed.pop(request, None) for request in requests]


async def fenced(engine: AsyncEngine, sql: str, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
    """Run one of the fenced statements over ``rows`` of (task id, attempt, event count, events JSON,
    then the statement's own columns); for each row, whether its attempt still owned the task.

    An UPDATE applies one row per task, so a task named twice goes in a later statement, in order.
    """
    statements: list[dict[uuid.UUID, int]] = []  # per statement: task id -> its row's index
    for index, row in enumerate(rows):
        for statement in statements:
            if row[0] not in statement:
                statement[row[0]] = index
                break
        else:
            statements.append({row[0]: index})
    owned = [False] * len(rows)
    async with driver(engine) as db:
        for statement in statements:
            columns = list(zip(*(rows[statement[task_id]] for task_id in sorted(statement)), strict=True))
            for record in await db.fetch(sql, *columns[:4], utcnow(), *columns[4:]):
                owned[statement[record["id"]]] = True
    return owned
