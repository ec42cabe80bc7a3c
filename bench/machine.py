"""What the figures were measured on: they mean little without it."""

from __future__ import annotations

import asyncio
import os
import platform
from importlib.metadata import version

import asyncpg
import psutil

from bench import services


async def _postgres_version() -> str:
    conn = await asyncpg.connect(services.dsn(services.PG_ADMIN_URL))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def describe() -> dict[str, str]:
    packages = ["dramatiq", "celery", "sqlalchemy", "asyncpg", "psycopg", "fastapi", "uvicorn", "httpx", "pika"]
    return {
        "CPU cores": str(os.cpu_count()),
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "PostgreSQL": asyncio.run(_postgres_version()),
        "RabbitMQ": services.rabbitmq_version(),
        **{name: version(name) for name in packages},
    }
