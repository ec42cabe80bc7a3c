"""A backlog of API-submitted ops-core tasks that the workers only see once they are ready.

Why not start the workers on a full queue, as the baselines do: ops-core's
worker starts consuming before its runner exists (``WorkerProcess.start``
starts the Dramatiq worker, then builds the ``TaskRunner``), so messages
delivered in that window fail with ``AssertionError: start() first`` and are
dead-lettered, leaving their tasks ``pending`` for good (they count as
published, so the relay never republishes them). Until that is fixed the
API publishes to a holding queue no worker reads; once the workers have
registered, the stored task ids are published to the real queue with
ops-core's own :class:`~ops_core.queue.publisher.Publisher`, timed from the
first publish.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import asyncpg

from bench.pipeline.deploy import OpsCore
from ops_core.config import Settings
from ops_core.queue.broker import setup_broker
from ops_core.queue.publisher import Publisher

PUBLISH_CONCURRENCY = 64


async def release(system: OpsCore) -> float:
    """Publish every pending task to the workers' queue; returns the ``time.monotonic()`` of the first publish."""
    conn = await asyncpg.connect(system.dsn)
    try:
        rows = await conn.fetch("SELECT id FROM tasks WHERE status = 'pending' ORDER BY created_at")
    finally:
        await conn.close()
    settings = Settings(
        database_url=system.database_url, broker_url=system.env["OPSCORE_BROKER_URL"], queue_name=system.queue
    )
    broker = setup_broker(settings)
    publisher = Publisher(broker, settings.queue_name, settings.broker_url)
    ids = [UUID(str(row["id"])) for row in rows]
    started = time.monotonic()
    try:
        for first in range(0, len(ids), PUBLISH_CONCURRENCY):
            await asyncio.gather(*(publisher.publish(task_id) for task_id in ids[first : first + PUBLISH_CONCURRENCY]))
    finally:
        broker.close()
    return started
