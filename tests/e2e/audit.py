"""What the fault tests check after the dust settles, read straight from PostgreSQL and RabbitMQ.

The checks go to the services directly (never through a deployment's proxy,
which a test may have cut) and only read: task statuses, the status events
that prove how often each task completed, and the queue's depth.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pika
from sqlalchemy.engine import make_url

from tests.e2e.stack import Deployment, Stack
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_for

TERMINAL_STATUSES = ("completed", "failed", "cancelled")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Audit:
    """One snapshot of a set of tasks."""

    statuses: Counter[str]
    completions: Counter[int]  # how many tasks have N status→completed events
    attempts: Counter[int]
    running_without_worker: int

    @property
    def terminal(self) -> int:
        return sum(self.statuses[s] for s in TERMINAL_STATUSES)


async def audit(database_url: str, ids: Sequence[str]) -> Audit:
    task_ids = [uuid.UUID(i) for i in ids]
    conn = await asyncpg.connect(_dsn(database_url), timeout=10)
    try:
        rows = await conn.fetch(
            """
            SELECT t.status, t.attempts, t.worker_id,
                   (SELECT count(*) FROM task_events e
                     WHERE e.task_id = t.id AND e.type = 'status' AND e.payload->>'to' = 'completed') AS completions
              FROM tasks t WHERE t.id = ANY($1::uuid[])
            """,
            task_ids,
        )
    finally:
        await conn.close()
    return Audit(
        statuses=Counter(r["status"] for r in rows) + Counter({"missing": len(task_ids) - len(rows)}),
        completions=Counter(int(r["completions"]) for r in rows),
        attempts=Counter(int(r["attempts"]) for r in rows),
        running_without_worker=sum(1 for r in rows if r["status"] == "running" and r["worker_id"] is None),
    )


async def wait_all_terminal(deployment: Deployment, ids: Sequence[str], *, timeout: float) -> Audit:
    return await wait_for(
        lambda: audit(deployment.direct_database_url, ids),
        lambda snapshot: snapshot.terminal == len(ids),
        timeout=timeout,
        what=f"all {len(ids)} tasks terminal\n{deployment.logs()}",
    )


def queue_depth(amqp_url: str, queue_name: str) -> int:
    """Ready messages in the queue (a passive declare: reads, never creates)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        declared = connection.channel().queue_declare(queue=queue_name, passive=True)
        return int(declared.method.message_count or 0)
    finally:
        connection.close()


async def wait_queue_drained(deployment: Deployment, *, timeout: float = 30) -> int:
    """Leftover messages (duplicates of finished tasks) are consumed and dropped: the queue ends empty."""
    return await wait_for(
        lambda: asyncio.to_thread(queue_depth, deployment.direct_amqp_url, deployment.queue_name),
        lambda depth: depth == 0,
        timeout=timeout,
        what="the task queue to drain",
    )


@asynccontextmanager
async def open_stack(deployment: Deployment) -> AsyncIterator[Stack]:
    async with deployment.client() as client:
        yield Stack(deployment, client)


async def submit_many(stack: Stack, count: int, goal: str, **body: Any) -> list[str]:
    """Submit ``count`` tasks (goal formatted with ``{i}``), a bounded number at a time."""
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        async with gate:
            return str((await stack.submit(goal=goal.format(i=i), **body))["id"])

    ids = await asyncio.gather(*(one(i) for i in range(count)))
    assert len(set(ids)) == count
    return list(ids)


async def requeued_from(deployment: Deployment, ids: Sequence[str], worker_id: str) -> int:
    """How many of ``ids`` were requeued because ``worker_id`` stopped heartbeating."""
    conn = await asyncpg.connect(_dsn(deployment.direct_database_url), timeout=10)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM task_events WHERE type = 'requeued' AND task_id = ANY($1::uuid[])"
            " AND payload->>'message' LIKE $2",
            [uuid.UUID(i) for i in ids],
            f"worker {worker_id} %",
        )
    finally:
        await conn.close()
    return int(count)


async def registered_worker_id(deployment: Deployment, pool: ManagedProcess) -> str:
    """The id the running worker process of ``pool`` (one ``opscore worker``) registered under, however
    fresh its last heartbeat."""
    conn = await asyncpg.connect(_dsn(deployment.direct_database_url), timeout=10)
    try:
        found = await conn.fetchval(
            "SELECT id FROM workers WHERE pid = ANY($1::int[]) AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1",
            sorted(Deployment.pool_pids(pool)),
        )
    finally:
        await conn.close()
    assert found is not None, f"no worker registered under the pool {pool.pid}"
    return str(found)


async def heartbeat_age(deployment: Deployment, worker_id: str) -> float:
    """Seconds since ``worker_id`` last wrote its heartbeat, by the database's clock."""
    conn = await asyncpg.connect(_dsn(deployment.direct_database_url), timeout=10)
    try:
        age = await conn.fetchval(
            "SELECT extract(epoch FROM clock_timestamp() - last_heartbeat) FROM workers WHERE id = $1", worker_id
        )
    finally:
        await conn.close()
    assert age is not None, f"no worker {worker_id}"
    return float(age)


async def wait_running(deployment: Deployment, ids: Sequence[str], at_least: int, *, timeout: float = 60) -> Audit:
    return await wait_for(
        lambda: audit(deployment.direct_database_url, ids),
        lambda snapshot: snapshot.statuses["running"] >= at_least,
        timeout=timeout,
        what=f"{at_least} tasks running\n{deployment.logs()}",
    )
