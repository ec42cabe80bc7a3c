"""Baseline (d): a bare FastAPI submit endpoint, one uvicorn process: INSERT a row, publish a Dramatiq message.

The same durability contract as ops-core's ``POST /v1/tasks``: the row is
committed before the message is published, the publish waits for RabbitMQ's
confirm, and the blocking pika send runs in a thread, as ops-core's does.
Uvicorn runs with its defaults (log level info, access log on), as ``opscore api``
does. The messages name baseline (b)'s actor, so (d) + (b) form the bare
pipeline the end-to-end latency is compared with.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI
from pydantic import BaseModel

from bench.baselines import dramatiq_pg, table
from bench.baselines.dramatiq_base import make_broker, message
from bench.baselines.env import WorkerConfig, process_env
from bench.procs import Command

PATH = "/v1/tasks"


class Submit(BaseModel):
    goal: str
    agent: str = "default"


def create_app(config: WorkerConfig) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(config.dsn, min_size=2, max_size=dramatiq_pg.POOL_SIZE)
        broker = make_broker(config.amqp_url, confirm_delivery=True)
        broker.declare_queue(config.queue)
        state["broker"] = broker
        yield
        broker.close()
        await state["pool"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post(PATH, status_code=202)
    async def submit(body: Submit) -> dict[str, Any]:
        row_id = await state["pool"].fetchval(table.INSERT_ONE)
        sent = message(config.queue, dramatiq_pg.ACTOR, (row_id,))
        await asyncio.to_thread(state["broker"].enqueue, sent)
        return {"id": row_id, "status": "pending"}

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``."""
    return create_app(WorkerConfig.from_env())


def start(config: WorkerConfig, port: int, log_dir: Path) -> Command:
    args = ["uvicorn", "--factory", f"{__name__}:app_from_env", "--host", "127.0.0.1", "--port", str(port)]
    return Command("fastapi-submit", args, process_env(config), log_dir).start()
