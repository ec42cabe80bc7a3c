"""The PostgreSQL backend: every statement of the store as SQL, run on asyncpg under SQLAlchemy's pool.

Plain SQL rather than SQLAlchemy Core: building Core statements and their
cache keys cost more CPU than PostgreSQL spends running them, and a worker's
event loop is one core. Each write is one round trip in autocommit: a
conditional UPDATE (or the INSERT) whose RETURNING feeds a data-modifying CTE
that inserts the events (:data:`_EVENTS`, the one place seqs are assigned).

The claims and the fenced writes that arrive together go out as one statement
over arrays (group commit, see batch.py). JSONB parameters are JSON text: the
dialect installs a codec on these connections that encodes text and decodes
values.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ops_core.db.batch import Batcher
from ops_core.db.engine import driver_connection, json_dumps
from ops_core.db.models import (
    TASK_COLUMNS,
    Claim,
    EventHead,
    FinishedCount,
    NewEvent,
    StatusChange,
    StatusCount,
    Task,
    TaskEvent,
    TaskPage,
    TaskStats,
    UsageTotal,
    WorkerView,
)
from ops_core.db.rules import (
    CLAIM,
    HELD_AT,
    REMOTE_WORKER_PREFIX,
    Close,
    Fenced,
    Move,
    Running,
    manual_retry_move,
    status_event,
    utcnow,
)
from ops_core.db.rules import (
    UNSTARTED as UNSTARTED_MOVE,
)
from ops_core.db.store import TaskStore, decode_cursor, not_found, page_of
from ops_core.domain import ErrorType, EventType
from ops_core.errors import DatabaseUnavailable
from ops_core.lifecycle import RetryPolicy, TaskStatus
from ops_core.tenancy import TenantScope, tenant_or_none

_COLUMNS = ", ".join(TASK_COLUMNS)
_TASK_COLUMNS = ", ".join(f"tasks.{c}" for c in TASK_COLUMNS)
_UNFINISHED = "finished_at IS NULL"  # implied by pending or running; lets the planner use ix_tasks_active


def _of_tenant(param: str) -> str:
    """A caller's scope, passed as ``param``: a tenant, or NULL for every tenant."""
    return f"({param}::text IS NULL OR tasks.tenant = {param})"


# Numbers the events a write brings from the seqs its UPDATE reserved: ``bumped`` has the row's id and
# new last_event_seq; {count} and {attempt} are expressions over it, {events} a JSON array of events.
_EVENTS = """
added AS (
    INSERT INTO task_events (task_id, seq, attempt, type, payload, created_at)
    SELECT bumped.id, bumped.last_event_seq - {count} + item.ord, {attempt},
           item.value->>'type', item.value->'payload'{stamp}, (item.value->>'created_at')::timestamptz
    FROM bumped, jsonb_array_elements({events}::jsonb) WITH ORDINALITY AS item(value, ord)
)"""


def _with_events(write: str, *, count: str, attempt: str, events: str, select: str, stamp: bool = False) -> str:
    """``write`` (an UPDATE or INSERT returning ``id, last_event_seq, …``) as CTE ``bumped``, plus its events."""
    stamped = " || jsonb_build_object('attempt', bumped.attempts)" if stamp else ""
    added = _EVENTS.format(count=count, attempt=attempt, events=events, stamp=stamped)
    return f"WITH bumped AS ({write}),{added}\nSELECT {select} FROM bumped"


INSERT = _with_events(
    f"""INSERT INTO tasks ({_COLUMNS}) SELECT {_COLUMNS} FROM jsonb_populate_record(NULL::tasks, $1::jsonb)
    ON CONFLICT (tenant, idempotency_key) DO NOTHING RETURNING id, last_event_seq""",
    count="1",
    attempt="0",
    events="$2",
    select="id",
)


# Claims come in a batch, in id order so that concurrent batches lock rows in one order.
def _claim_sql(only: str = "") -> str:
    return _with_events(
        f"""UPDATE tasks SET status = 'running', attempts = attempts + 1, last_event_seq = last_event_seq + 1,
            started_at = COALESCE(started_at, $2), claimed_at = $2, worker_id = $3, updated_at = $2
        WHERE id = ANY($1::uuid[]) AND status = '{CLAIM.source.value}'
          AND (start_deadline IS NULL OR started_at IS NOT NULL OR start_deadline >= $2){only}
        RETURNING {_COLUMNS}""",
        count="1",
        attempt="bumped.attempts",
        events="$4",
        select=_COLUMNS,
        stamp=True,
    )


_LIMITED = "SELECT id, max_running FROM tenants WHERE max_running IS NOT NULL"
# The batched claim takes only tasks in no group (rules.py, slots): keyless, of tenants without a
# running limit. The others go one by one through claim_limited, under their groups' locks.
CLAIM_SQL = _claim_sql(
    f" AND tasks.concurrency_key IS NULL AND tasks.tenant NOT IN (SELECT id FROM ({_LIMITED}) AS limited)"
)
CLAIM_LIMITED_SQL = _claim_sql()

# A pending task in a group, with its groups' limits (max_running NULL: its tenant has none).
LIMITED_TASK = """
SELECT tasks.tenant, tasks.created_at, tasks.concurrency_key, tasks.concurrency_limit, tenants.max_running
FROM tasks LEFT JOIN tenants ON tenants.id = tasks.tenant
WHERE tasks.id = $1 AND tasks.status = 'pending'
  AND (tenants.max_running IS NOT NULL OR tasks.concurrency_key IS NOT NULL)"""

# Taken in this order, tenant then key, by every claim that takes both: no deadlock.
TENANT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('opscore.tenant:' || $1, 0))"
# The tenant's length keeps ("a:b", "c") and ("a", "b:c") apart.
KEY_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('opscore.key:' || length($1::text) || ':' || $1 || $2::text, 0))"
)

_DUE = "(run_after IS NULL OR run_after <= {now})"

# A session's key is strict (rules.py, slots): its waiting tasks keep their place, and so do its
# pending ones that are not yet due. Every task of a key is in one session or in none.
_STRICT = "session_id IS NOT NULL"

# Running tasks of the key ($1, $2), plus its pending tasks ahead of ($3, $4) that are due ($5).
KEY_AHEAD = f"""
SELECT count(*) FROM tasks
WHERE tenant = $1 AND concurrency_key = $2 AND {_UNFINISHED} AND (status = 'running'
   OR ({_STRICT} AND status = 'waiting')
   OR (status = 'pending' AND (created_at, id) < ($3, $4) AND ({_STRICT} OR {_DUE.format(now="$5")})))"""

# Each unfinished keyed task: whether its key has a slot for it (rules.py, key-eligible), for the
# pending ones. {where} narrows the rows (every window is per key, so a narrower set of whole keys
# gives the same answers); served by ix_tasks_concurrency_key.
_KEYED = f"""
SELECT id, tenant, status, created_at,
       count(*) FILTER (WHERE status <> 'pending') OVER (PARTITION BY tenant, concurrency_key)
     + count(*) FILTER (WHERE status = 'pending') OVER (PARTITION BY tenant, concurrency_key ORDER BY created_at, id)
       <= concurrency_limit AND status = 'pending' AND {_DUE.format(now="{now}")} AS eligible
FROM tasks
WHERE {_UNFINISHED} AND concurrency_key IS NOT NULL{{where}}
  AND (status = 'running' OR (status = 'pending' AND {_DUE.format(now="{now}")})
       OR ({_STRICT} AND status IN ('waiting', 'pending')))"""

# Running tasks of the tenant $1, plus its pending due ($4) tasks ahead of ($2, $3) that are keyless
# or key-eligible (rules.py, slots).
TENANT_AHEAD = f"""
WITH keyed AS ({_KEYED.format(where=" AND tenant = $1", now="$4")})
SELECT (SELECT count(*) FROM tasks
        WHERE tenant = $1 AND concurrency_key IS NULL AND {_UNFINISHED} AND (status = 'running'
           OR (status = 'pending' AND (created_at, id) < ($2, $3) AND {_DUE.format(now="$4")})))
     + (SELECT count(*) FROM keyed WHERE status = 'running' OR (eligible AND (created_at, id) < ($2, $3)))"""

HOLD = "UPDATE tasks SET published_at = $2 WHERE id = $1 AND status = 'pending'"

# While each attempt still owns its task: its events, plus what a step or the end changes.
_FENCED = """UPDATE tasks SET last_event_seq = tasks.last_event_seq + batch.n, updated_at = $5{assignments}
    FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[]{types}) AS batch(id, attempt, n, events{names})
    WHERE tasks.id = batch.id AND tasks.status = 'running' AND tasks.attempts = batch.attempt
    RETURNING tasks.id, tasks.last_event_seq, batch.n, batch.attempt, batch.events"""


def _fenced(types: str = "", names: str = "", assignments: str = "") -> str:
    write = _FENCED.format(types=types, names=names, assignments=assignments)
    return _with_events(write, count="bumped.n", attempt="bumped.attempt", events="bumped.events", select="id")


_TOKENS = (
    "input_tokens = tasks.input_tokens + batch.input_tokens, output_tokens = tasks.output_tokens + batch.output_tokens"
)
APPEND = _fenced()
CHECKPOINT = _fenced(
    ", $6::text[], $7::int[], $8::int[]",
    ", checkpoint, input_tokens, output_tokens",
    f", checkpoint = batch.checkpoint::jsonb, {_TOKENS}",
)
COMPLETE = _fenced(
    ", $6::text[], $7::int[], $8::int[], $9::int[]",
    ", result, input_tokens, output_tokens, reused_tokens",
    f", status = 'completed', finished_at = $5, result = batch.result::jsonb, {_TOKENS},"
    " reused_tokens = tasks.reused_tokens + batch.reused_tokens",
)

END = _with_events(
    """UPDATE tasks SET status = $3::varchar, updated_at = $4, finished_at = $5, last_event_seq = last_event_seq + $6,
        input_tokens = input_tokens + $8, output_tokens = output_tokens + $9, reused_tokens = reused_tokens + $10,
        error_type = $11, error_message = $12, attempt_errors = COALESCE($13::jsonb, attempt_errors),
        run_after = $14, attempts = attempts - $15,
        published_at = CASE WHEN $3::varchar = 'pending' THEN NULL ELSE published_at END
    WHERE id = $1 AND status = 'running' AND attempts = $2
    RETURNING id, last_event_seq""",
    count="$6",
    attempt="$2",
    events="$7",
    select="id",
)

CANCEL_UNCLAIMED = _with_events(
    f"""UPDATE tasks SET status = 'cancelled', error_type = $3, error_message = $5,
        finished_at = $2, updated_at = $2, last_event_seq = last_event_seq + 1
    WHERE id = $1 AND status = $6::varchar RETURNING {_COLUMNS}""",
    count="1",
    attempt="bumped.attempts",
    events="$4",
    select=_COLUMNS,
)

FLAG_CANCEL = _with_events(
    f"""UPDATE tasks SET cancel_requested = true, updated_at = $2, last_event_seq = last_event_seq + 1
    WHERE id = $1 AND status = 'running' AND NOT cancel_requested RETURNING {_COLUMNS}""",
    count="1",
    attempt="bumped.attempts",
    events="$3",
    select=_COLUMNS,
)

REOPEN = _with_events(
    f"""UPDATE tasks SET status = 'pending', published_at = NULL, run_after = NULL, cancel_requested = false,
        error_type = NULL, error_message = NULL, result = NULL, finished_at = NULL, start_deadline = $4,
        max_retries = $5, retry_base = $6, manual_retries = manual_retries + 1, updated_at = $7,
        last_event_seq = last_event_seq + 1
    WHERE id = $1 AND status = $2 AND attempts = $3 AND manual_retries = $8
    RETURNING {_COLUMNS}""",
    count="1",
    attempt="bumped.attempts",
    events="$9",
    select=_COLUMNS,
)

FAIL_UNSTARTED = _with_events(
    """UPDATE tasks SET status = 'failed', error_type = $3, error_message = $4, finished_at = $2, updated_at = $2,
        last_event_seq = last_event_seq + 1
    WHERE id = ANY($1::uuid[]) AND status = 'pending' AND started_at IS NULL AND start_deadline < $2
    RETURNING id, last_event_seq""",
    count="1",
    attempt="0",
    events="$5",
    select="id",
)

MARK_PUBLISHED = f"""
UPDATE tasks SET published_at = $2
WHERE id = ANY($1::uuid[]) AND status = 'pending' AND {_UNFINISHED} AND (published_at IS NULL OR published_at < $3)"""

# Due tasks in a group are published only when claimable now (rules.py, slots): those of a key
# when key-eligible, those of a limited tenant when its free slots reach them, counting only the
# tenant's keyless and key-eligible tasks.
DUE_FOR_PUBLISH = f"""
WITH limited AS ({_LIMITED}),
keyed AS ({_KEYED.format(where="", now="$1")}),
running AS (
    SELECT tenant, count(*) AS n FROM tasks
    WHERE {_UNFINISHED} AND status = 'running' AND tenant IN (SELECT id FROM limited) GROUP BY tenant
),
queued AS (
    SELECT tasks.id, tasks.tenant,
           row_number() OVER (PARTITION BY tasks.tenant ORDER BY tasks.created_at, tasks.id) AS place
    FROM tasks JOIN limited ON limited.id = tasks.tenant
    WHERE tasks.{_UNFINISHED} AND tasks.status = 'pending' AND {_DUE.format(now="$1")}
      AND (tasks.concurrency_key IS NULL OR tasks.id IN (SELECT id FROM keyed WHERE eligible))
),
startable AS (
    SELECT queued.id FROM queued JOIN limited ON limited.id = queued.tenant
    LEFT JOIN running ON running.tenant = queued.tenant
    WHERE queued.place + COALESCE(running.n, 0) <= limited.max_running
)
SELECT {_COLUMNS} FROM tasks
WHERE {_UNFINISHED} AND status = 'pending' AND (published_at IS NULL OR published_at < $2)
  AND {_DUE.format(now="$1")}
  AND (tenant NOT IN (SELECT id FROM limited) OR id IN (SELECT id FROM startable))
  AND (concurrency_key IS NULL OR id IN (SELECT id FROM keyed WHERE eligible))
ORDER BY created_at LIMIT $3"""

USAGE = f"""
SELECT tenant, agent, model, count(*) AS tasks, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(reused_tokens) AS reused_tokens
FROM tasks WHERE created_at >= $1 AND {_of_tenant("$2")}
GROUP BY tenant, agent, model ORDER BY tenant, agent, model"""

_LAG = "extract(epoch FROM started_at - created_at)::float8"
STATS_BY_STATUS = f"""
SELECT status, count(*) AS tasks, count(started_at) AS started,
       COALESCE(sum({_LAG}), 0) AS lag_sum, COALESCE(max({_LAG}), 0) AS lag_max
FROM tasks WHERE created_at >= $1 AND {_of_tenant("$2")}
GROUP BY status ORDER BY status"""

STATS_FINISHED = f"""
SELECT floor(extract(epoch FROM finished_at - $1) / $3)::int AS bucket, status, count(*) AS tasks
FROM tasks WHERE created_at >= $1 AND {_of_tenant("$2")} AND finished_at >= $1
GROUP BY bucket, status ORDER BY bucket, status"""

STATUS_CHANGES = f"""
SELECT e.id, e.task_id, tasks.agent, e.seq, e.attempt, e.payload, e.created_at
FROM task_events e JOIN tasks ON tasks.id = e.task_id
WHERE e.id > $1 AND e.type = 'status' AND {_of_tenant("$2")}
  AND ($3::text IS NULL OR tasks.agent = $3) AND ($4::text IS NULL OR e.payload->>'to' = $4)
ORDER BY e.id LIMIT $5"""

EVENT_HEADS = "SELECT id, last_event_seq, status FROM tasks WHERE id = ANY($1::uuid[])"

CANCEL_REQUESTED = "SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'running' AND cancel_requested"

_RUNNING = "tasks.id, tasks.attempts, tasks.max_retries, tasks.worker_id, tasks.claimed_at, tasks.timeout_seconds"
ORPHANS = f"""
SELECT {_RUNNING} FROM tasks LEFT JOIN workers ON workers.id = tasks.worker_id
WHERE tasks.{_UNFINISHED} AND tasks.status = 'running'
  AND (workers.stopped_at IS NOT NULL OR workers.last_heartbeat < $1
       OR (workers.id IS NULL AND (tasks.claimed_at IS NULL OR tasks.claimed_at < $1)))
  AND tasks.worker_id IS DISTINCT FROM $2
  -- a remote agent's attempt: its lease is db/remote.py's
  AND COALESCE(tasks.worker_id, '') NOT LIKE '{REMOTE_WORKER_PREFIX}%'
ORDER BY tasks.id"""

RUNNING_SQL = f"SELECT {_RUNNING} FROM tasks WHERE {_UNFINISHED} AND status = 'running' ORDER BY id"

UNSTARTED = f"""
SELECT id FROM tasks
WHERE {_UNFINISHED} AND status = 'pending' AND started_at IS NULL AND start_deadline < $1 ORDER BY id"""

REGISTER = """
INSERT INTO workers (id, host, pid, concurrency, started_at, last_heartbeat) VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (id) DO UPDATE SET host = $2, pid = $3, concurrency = $4, started_at = $5, last_heartbeat = $5,
    stopped_at = NULL"""

LIVE_WORKERS = """
SELECT workers.id, host, pid, concurrency, workers.started_at, last_heartbeat,
       COALESCE(array_agg(tasks.id ORDER BY tasks.id) FILTER (WHERE tasks.id IS NOT NULL), '{}') AS running
FROM workers LEFT JOIN tasks
    ON tasks.worker_id = workers.id AND tasks.finished_at IS NULL AND tasks.status = 'running'
WHERE stopped_at IS NULL AND last_heartbeat >= $1
GROUP BY workers.id ORDER BY workers.started_at"""


def _events_json(events: Sequence[NewEvent], now: datetime) -> str:
    return json_dumps(
        [{"type": e.type, "payload": e.payload, "created_at": (e.created_at or now).isoformat()} for e in events]
    )


def _fenced_args(sql: str, batch: Sequence[Fenced], now: datetime) -> builtins.list[Any]:
    """The array parameters of APPEND, CHECKPOINT or COMPLETE, in the order their SQL numbers them."""
    args: builtins.list[Any] = [
        [w.task_id for w in batch],
        [w.attempt for w in batch],
        [len(w.events) for w in batch],
        [_events_json(w.events, now) for w in batch],
        now,
    ]
    if sql is CHECKPOINT:
        args.append([json_dumps(w.checkpoint) for w in batch])
    elif sql is COMPLETE:
        args.append([json_dumps(w.result) for w in batch])
    if sql is not APPEND:
        args += [[w.usage.input_tokens for w in batch], [w.usage.output_tokens for w in batch]]
    if sql is COMPLETE:
        args.append([w.usage.reused_tokens for w in batch])
    return args


def _running_row(row: Any) -> Running:
    return Running(
        task_id=row["id"],
        attempt=row["attempts"],
        max_retries=row["max_retries"],
        worker_id=row["worker_id"],
        claimed_at=row["claimed_at"],
        timeout_seconds=row["timeout_seconds"],
    )


class PostgresStore(TaskStore):
    def __init__(self, engine: AsyncEngine, *, policy: RetryPolicy | None = None) -> None:
        super().__init__(engine, policy=policy)
        self._claims: Batcher[tuple[uuid.UUID, str], Claim | None] = Batcher(self._send_claims)
        self._appends: Batcher[Fenced, bool] = Batcher(partial(self._send_fenced, APPEND))
        self._checkpoints: Batcher[Fenced, bool] = Batcher(partial(self._send_fenced, CHECKPOINT))
        self._completions: Batcher[Fenced, bool] = Batcher(partial(self._send_fenced, COMPLETE))

    def _db(self) -> AbstractAsyncContextManager[Any]:
        """The asyncpg connection of a pooled connection, in autocommit (see ``driver_connection``)."""
        return driver_connection(self.engine)

    # ---- submission and reads ------------------------------------------------------------------

    async def _insert(self, task: Task, event: NewEvent) -> bool:
        row = {name: getattr(task, name) for name in TASK_COLUMNS}
        async with self._db() as db:
            return await db.fetchval(INSERT, json_dumps(row), _events_json([event], task.created_at)) is not None

    async def _by_idempotency_key(self, tenant: str, key: str) -> Task:
        async with self._db() as db:
            row = await db.fetchrow(
                f"SELECT {_COLUMNS} FROM tasks WHERE tenant = $1 AND idempotency_key = $2", tenant, key
            )
        return Task.from_row(row)

    async def get(self, task_id: uuid.UUID, *, tenant: TenantScope) -> Task:
        async with self._db() as db:
            row = await db.fetchrow(
                f"SELECT {_COLUMNS} FROM tasks WHERE id = $1 AND {_of_tenant('$2')}", task_id, tenant_or_none(tenant)
            )
        if row is None:
            raise not_found(task_id)
        return Task.from_row(row)

    async def list(
        self,
        *,
        tenant: TenantScope,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        where: builtins.list[str] = ["true"]
        args: builtins.list[Any] = []
        if (scoped := tenant_or_none(tenant)) is not None:
            args.append(scoped)
            where.append(f"tenant = ${len(args)}")
        if status is not None:
            args.append(TaskStatus(status).value)
            where.append(f"status = ${len(args)}")
            if not TaskStatus(status).is_terminal:
                where.append(_UNFINISHED)
        if agent is not None:
            args.append(agent)
            where.append(f"agent = ${len(args)}")
        if cursor is not None:
            args.extend(decode_cursor(cursor))
            where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        sql = (
            f"SELECT {_COLUMNS} FROM tasks WHERE {' AND '.join(where)}"
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
        )
        async with self._db() as db:
            rows = await db.fetch(sql, *args)
        return page_of([Task.from_row(r) for r in rows], limit)

    async def list_events(
        self, task_id: uuid.UUID, *, tenant: TenantScope, after_seq: int = 0, limit: int = 1000
    ) -> builtins.list[TaskEvent]:
        scoped = tenant_or_none(tenant)
        async with self._db() as db:
            rows = await db.fetch(
                "SELECT e.id, e.task_id, e.seq, e.attempt, e.type, e.payload, e.created_at"
                " FROM task_events e JOIN tasks ON tasks.id = e.task_id"
                f" WHERE e.task_id = $1 AND e.seq > $2 AND {_of_tenant('$4')} ORDER BY e.seq LIMIT $3",
                task_id,
                after_seq,
                limit,
                scoped,
            )
            # Only an empty answer needs the extra lookup: every task has its creation event.
            if (
                not rows
                and await db.fetchval(f"SELECT id FROM tasks WHERE id = $1 AND {_of_tenant('$2')}", task_id, scoped)
                is None
            ):
                raise not_found(task_id)
        return [TaskEvent.from_row(r) for r in rows]

    async def event_heads(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EventHead]:
        async with self._db() as db:
            rows = await db.fetch(EVENT_HEADS, list(task_ids))
        return {row["id"]: EventHead(row["last_event_seq"], TaskStatus(row["status"])) for row in rows}

    async def last_event_id(self) -> int:
        async with self._db() as db:
            return int(await db.fetchval("SELECT COALESCE(max(id), 0) FROM task_events"))

    async def status_changes(
        self,
        *,
        tenant: TenantScope,
        after_id: int,
        agent: str | None = None,
        status: TaskStatus | None = None,
        limit: int = 500,
    ) -> builtins.list[StatusChange]:
        wanted = None if status is None else TaskStatus(status).value
        async with self._db() as db:
            rows = await db.fetch(STATUS_CHANGES, after_id, tenant_or_none(tenant), agent, wanted, limit)
        return [StatusChange.from_row(row) for row in rows]

    async def usage(self, *, tenant: TenantScope, since: datetime) -> builtins.list[UsageTotal]:
        async with self._db() as db:
            rows = await db.fetch(USAGE, since, tenant_or_none(tenant))
        return [UsageTotal(**dict(r)) for r in rows]

    async def stats(self, *, tenant: TenantScope, since: datetime, bucket_seconds: int) -> TaskStats:
        async with self._db() as db:
            by_status = await db.fetch(STATS_BY_STATUS, since, tenant_or_none(tenant))
            finished = await db.fetch(STATS_FINISHED, since, tenant_or_none(tenant), float(bucket_seconds))
        return TaskStats(
            by_status=[StatusCount(**{**dict(r), "status": TaskStatus(r["status"])}) for r in by_status],
            finished=[FinishedCount(**{**dict(r), "status": TaskStatus(r["status"])}) for r in finished],
        )

    # ---- the outbox ------------------------------------------------------------------------------

    async def due_for_publish(
        self, *, limit: int, now: datetime | None = None, republish_before: datetime | None = None
    ) -> builtins.list[Task]:
        async with self._db() as db:
            rows = await db.fetch(DUE_FOR_PUBLISH, now or utcnow(), republish_before, limit)
        return [Task.from_row(r) for r in rows]

    async def mark_published(
        self, task_ids: Sequence[uuid.UUID], *, republished_before: datetime | None = None
    ) -> None:
        if task_ids:
            async with self._db() as db:
                await db.execute(MARK_PUBLISHED, list(task_ids), utcnow(), republished_before)

    # ---- the worker's side ---------------------------------------------------------------------

    async def _claim(self, task_id: uuid.UUID, worker_id: str) -> Claim | None:
        claim = await self._claims.submit((task_id, worker_id))
        # Not claimed: a duplicate delivery, a cancelled task, or one in a group (rules.py, slots).
        return claim if claim is not None else await self._claim_limited(task_id, worker_id)

    async def _claim_limited(self, task_id: uuid.UUID, worker_id: str) -> Claim | None:
        """Claim a task in a group if each of its groups has a slot for it; else hold it (rules.py, slots)."""
        async with self._db() as db, db.transaction():
            task = await db.fetchrow(LIMITED_TASK, task_id)
            if task is None:
                return None
            tenant, key, created_at = task["tenant"], task["concurrency_key"], task["created_at"]
            # Tenant first, then key (see TENANT_LOCK). Every read below comes after the locks, so every
            # claim in these groups that committed before is counted.
            if task["max_running"] is not None:
                await db.execute(TENANT_LOCK, tenant)
            if key is not None:
                await db.execute(KEY_LOCK, tenant, key)
            # Read after the locks too: the claim is stamped after the finish that freed its slot.
            now = utcnow()
            if (
                key is not None
                and await db.fetchval(KEY_AHEAD, tenant, key, created_at, task_id, now) >= task["concurrency_limit"]
            ) or (
                task["max_running"] is not None
                and await db.fetchval(TENANT_AHEAD, tenant, created_at, task_id, now) >= task["max_running"]
            ):
                await db.execute(HOLD, task_id, HELD_AT)
                return None
            events = _events_json([status_event(CLAIM, worker_id=worker_id)], now)
            row = await db.fetchrow(CLAIM_LIMITED_SQL, [task_id], now, worker_id, events)
        return None if row is None else Claim(Task.from_row(row), row["attempts"])

    async def _send_claims(self, requests: Sequence[tuple[uuid.UUID, str]]) -> builtins.list[Claim | None]:
        """One statement per worker id (a worker process has one)."""
        now = utcnow()
        wanted: dict[str, set[uuid.UUID]] = {}
        for task_id, worker_id in requests:
            wanted.setdefault(worker_id, set()).add(task_id)
        claimed: dict[tuple[uuid.UUID, str], Claim] = {}
        async with self._db() as db:
            for worker_id, ids in wanted.items():
                events = _events_json([status_event(CLAIM, worker_id=worker_id)], now)
                for row in await db.fetch(CLAIM_SQL, sorted(ids), now, worker_id, events):
                    claimed[(row["id"], worker_id)] = Claim(Task.from_row(row), row["attempts"])
        # A task asked for twice in one batch (a duplicate delivery) is claimed once, by the first asker.
        return [claimed.pop(request, None) for request in requests]

    async def _append(self, write: Fenced) -> bool:
        return await self._appends.submit(write)

    async def _checkpoint(self, write: Fenced) -> bool:
        return await self._checkpoints.submit(write)

    async def _complete(self, write: Fenced) -> bool:
        return await self._completions.submit(write)

    async def _send_fenced(self, sql: str, writes: Sequence[Fenced]) -> builtins.list[bool]:
        """Run one of the fenced statements over ``writes``; for each, whether its attempt still owned the task.

        An UPDATE applies one row per task, so a task named twice goes in a later statement, in order.
        """
        now = utcnow()
        rounds: builtins.list[dict[uuid.UUID, int]] = []  # per statement: task id -> index in writes
        for index, write in enumerate(writes):
            for statement in rounds:
                if write.task_id not in statement:
                    statement[write.task_id] = index
                    break
            else:
                rounds.append({write.task_id: index})
        owned = [False] * len(writes)
        async with self._db() as db:
            for statement in rounds:
                batch = [writes[statement[task_id]] for task_id in sorted(statement)]
                for row in await db.fetch(sql, *_fenced_args(sql, batch, now)):
                    owned[statement[row["id"]]] = True
        return owned

    async def _attempt_errors(self, task_id: uuid.UUID) -> builtins.list[dict[str, Any]]:
        async with self._db() as db:
            errors = await db.fetchval("SELECT attempt_errors FROM tasks WHERE id = $1", task_id)
        return list(errors or [])

    async def _end(self, close: Close, attempt_errors: builtins.list[dict[str, Any]] | None, now: datetime) -> bool:
        events = close.all_events()
        async with self._db() as db:
            moved = await db.fetchval(
                END,
                close.task_id,
                close.attempt,
                close.move.to.value,
                now,
                now if close.move.to.is_terminal else None,
                len(events),
                _events_json(events, now),
                close.usage.input_tokens,
                close.usage.output_tokens,
                close.usage.reused_tokens,
                close.error_type,
                close.error_message,
                None if attempt_errors is None else json_dumps(attempt_errors),
                close.run_after,
                1 if close.refund_attempt else 0,
            )
        return moved is not None

    # ---- operator actions ------------------------------------------------------------------------

    async def _cancel_unclaimed(self, task_id: uuid.UUID, move: Move, message: str, now: datetime) -> Task | None:
        event = _events_json([status_event(move)], now)
        async with self._db() as db:
            row = await db.fetchrow(
                CANCEL_UNCLAIMED, task_id, now, ErrorType.CANCELLED.value, event, message, move.source.value
            )
        return None if row is None else Task.from_row(row)

    async def _flag_cancel(self, task_id: uuid.UUID, now: datetime) -> Task | None:
        event = _events_json([NewEvent(EventType.CANCEL_REQUESTED.value, {})], now)
        async with self._db() as db:
            row = await db.fetchrow(FLAG_CANCEL, task_id, now, event)
        return None if row is None else Task.from_row(row)

    async def cancel_requested(self, task_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not task_ids:
            return set()
        async with self._db() as db:
            return {row["id"] for row in await db.fetch(CANCEL_REQUESTED, list(task_ids))}

    async def _reopen(self, task: Task, now: datetime) -> Task | None:
        deadline = None
        if task.schedule_to_start_seconds is not None:
            deadline = now + timedelta(seconds=task.schedule_to_start_seconds)
        max_retries, retry_base = self.policy.renewed_budget(
            attempts=task.attempts, max_retries=task.max_retries, retry_base=task.retry_base
        )
        event = _events_json([status_event(manual_retry_move(task.status))], now)
        async with self._db() as db:
            row = await db.fetchrow(
                REOPEN,
                task.id,
                task.status.value,
                task.attempts,
                deadline,
                max_retries,
                retry_base,
                now,
                task.manual_retries,
                event,
            )
        return None if row is None else Task.from_row(row)

    # ---- crash recovery ----------------------------------------------------------------------------

    async def _orphans(self, cutoff: datetime, caller: str | None) -> builtins.list[Running]:
        async with self._db() as db:
            return [_running_row(row) for row in await db.fetch(ORPHANS, cutoff, caller)]

    async def _running(self) -> builtins.list[Running]:
        async with self._db() as db:
            return [_running_row(row) for row in await db.fetch(RUNNING_SQL)]

    async def _unstarted(self, now: datetime) -> builtins.list[uuid.UUID]:
        async with self._db() as db:
            return [row["id"] for row in await db.fetch(UNSTARTED, now)]

    async def _fail_unstarted(self, task_ids: Sequence[uuid.UUID], now: datetime) -> builtins.list[uuid.UUID]:
        if not task_ids:
            return []
        reason = ErrorType.SCHEDULE_TO_START_TIMEOUT.value
        event = _events_json([status_event(UNSTARTED_MOVE, error_type=reason)], now)
        message = "the task waited longer than its schedule-to-start timeout"
        async with self._db() as db:
            return [row["id"] for row in await db.fetch(FAIL_UNSTARTED, sorted(task_ids), now, reason, message, event)]

    # ---- the worker registry -----------------------------------------------------------------------

    async def ping(self) -> None:
        async with self._db() as db:
            if await db.fetchval("SELECT 1") != 1:  # pragma: no cover - defensive
                raise DatabaseUnavailable("database answered SELECT 1 wrongly")

    async def register_worker(self, worker_id: str, host: str, pid: int, concurrency: int) -> None:
        async with self._db() as db:
            await db.execute(REGISTER, worker_id, host, pid, concurrency, utcnow())

    async def heartbeat(self, worker_id: str) -> None:
        async with self._db() as db:
            await db.execute("UPDATE workers SET last_heartbeat = $2 WHERE id = $1", worker_id, utcnow())

    async def deregister_worker(self, worker_id: str) -> None:
        async with self._db() as db:
            await db.execute("UPDATE workers SET stopped_at = $2 WHERE id = $1", worker_id, utcnow())

    async def live_workers(self, *, stale_after: float) -> builtins.list[WorkerView]:
        cutoff = utcnow() - timedelta(seconds=stale_after)
        async with self._db() as db:
            rows = await db.fetch(LIVE_WORKERS, cutoff)
        return [
            WorkerView(
                r["id"], r["host"], r["pid"], r["concurrency"], r["started_at"], r["last_heartbeat"], list(r["running"])
            )
            for r in rows
        ]
