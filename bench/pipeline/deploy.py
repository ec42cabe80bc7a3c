"""A running system under test: an API process, worker processes, and the table its tasks land in.

Two implementations of one shape, so every scenario drives ops-core and the
bare baseline pipeline ((d) + (b)) with the same code:

* :class:`OpsCore`: ``opscore api`` + ``opscore worker`` on a fresh, migrated database;
* :class:`Bare`: the FastAPI baseline (d) + the Dramatiq/asyncpg worker (b).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import asyncpg
import httpx
from tests.support.processes import OPSCORE, ManagedProcess, free_port
from tests.support.waiting import wait_for

from bench import services
from bench.baselines import dramatiq_base, dramatiq_pg, fastapi_submit, table
from bench.baselines.env import WorkerConfig
from ops_core.db import migrate

WORKER_THREADS = dramatiq_base.THREADS
READY_SECONDS = 60
DRAMATIQ_READY = "Worker process is ready for action"
HELLO = {"goal": "say hello", "agent": "default"}  # no arithmetic: the offline model answers in one call


class Deployment(Protocol):
    name: str
    dsn: str
    table: str
    submit_url: str
    headers: dict[str, str]
    api: ManagedProcess | None
    workers: ManagedProcess | None

    def start_api(self) -> None: ...
    def start_workers(self, processes: int) -> ManagedProcess: ...
    async def ready(self) -> None: ...
    async def workers_ready(self, processes: int) -> None: ...


def completed_sql(deployment: Deployment) -> str:
    return f"SELECT count(*) FROM {deployment.table} WHERE status = 'completed'"


def failed_sql(deployment: Deployment) -> str:
    return f"SELECT count(*) FROM {deployment.table} WHERE status = 'failed'"


def latency_sql(deployment: Deployment) -> str:
    """Submit → running and submit → completed, in seconds, skipping the first $1 (warm-up) tasks."""
    return f"""
        SELECT extract(epoch FROM started_at - created_at)::float8 AS dispatch,
               extract(epoch FROM finished_at - created_at)::float8 AS total
        FROM {deployment.table} WHERE status = 'completed' ORDER BY created_at OFFSET $1
    """


async def wait_ready(deployment: Deployment, path: str) -> None:
    assert deployment.api is not None
    api = deployment.api
    base = deployment.submit_url.rsplit("/v1/", 1)[0]

    async def probe() -> int:
        if not api.alive():
            raise RuntimeError(f"{api.name} exited:\n{api.log_tail()}")
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(base + path)).status_code
        except httpx.TransportError:
            return 0

    await wait_for(probe, lambda status: status == 200, timeout=READY_SECONDS, what=f"{api.name} ready")


def stop(*processes: ManagedProcess | None) -> None:
    for process in processes:
        if process is not None:
            process.stop()


class OpsCore:
    table = "tasks"

    def __init__(self, database_url: str, queue: str, log_dir: Path, extra_env: dict[str, str]) -> None:
        self.name = "ops-core"
        self.database_url = database_url
        self.queue = queue
        self.dsn = services.dsn(database_url)
        port = free_port()
        self.submit_url = f"http://127.0.0.1:{port}/v1/tasks"
        self._log_dir = log_dir
        # Production defaults except what names this run's database, broker and queue.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSCORE_", "OPENAI_"))}
        self.env.update(
            {
                "OPSCORE_DATABASE_URL": database_url,
                "OPSCORE_BROKER_URL": services.AMQP_URL,
                "OPSCORE_QUEUE_NAME": queue,
                "OPSCORE_PORT": str(port),
                "PYTHONUNBUFFERED": "1",
                **extra_env,
            }
        )
        self.api: ManagedProcess | None = None
        self.workers: ManagedProcess | None = None
        # Submissions carry a key, as in production; set once the database is migrated.
        self.headers: dict[str, str] = {}

    def create_key(self) -> None:
        """A read-write key of the tenant ``bench``, made as an operator makes one (``opscore keys create``)."""
        args = [OPSCORE, "keys", "create", "--tenant", "bench", "--scope", "tasks:write", "--scope", "tasks:read"]
        made = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60, check=True)
        self.headers = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}

    def start_api(self) -> None:
        self.api = ManagedProcess("opscore-api", ["api"], self.env, self._log_dir).start()

    def start_workers(self, processes: int) -> ManagedProcess:
        args = ["worker", "--processes", str(processes), "--threads", str(WORKER_THREADS)]
        self.workers = ManagedProcess(f"opscore-worker-{processes}p", args, self.env, self._log_dir).start()
        return self.workers

    async def ready(self) -> None:
        await wait_ready(self, "/readyz")

    async def workers_ready(self, processes: int) -> None:
        """Every worker process has registered (its runner is up)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await wait_for(
                lambda: conn.fetchval("SELECT count(*) FROM workers"),
                lambda count: count >= processes,
                timeout=READY_SECONDS,
                what=f"{processes} ops-core workers registered",
            )
        finally:
            await conn.close()


@contextlib.contextmanager
def opscore(log_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[OpsCore]:
    with services.scratch_database() as url, services.scratch_queue("opscore") as queue:
        migrate.upgrade(url)
        deployment = OpsCore(url, queue, log_dir, extra_env or {})
        deployment.create_key()
        try:
            yield deployment
        finally:
            stop(deployment.workers, deployment.api)


class Bare:
    table = "bench_tasks"

    def __init__(self, config: WorkerConfig, log_dir: Path) -> None:
        self.name = "bare FastAPI + Dramatiq"
        self.config = config
        self.dsn = config.dsn
        self._port = free_port()
        self.submit_url = f"http://127.0.0.1:{self._port}{fastapi_submit.PATH}"
        self.headers: dict[str, str] = {}  # the baseline has no auth
        self._log_dir = log_dir
        self.api: ManagedProcess | None = None
        self.workers: ManagedProcess | None = None

    def start_api(self) -> None:
        self.api = fastapi_submit.start(self.config, self._port, self._log_dir)

    def start_workers(self, processes: int) -> ManagedProcess:
        self.workers = dramatiq_base.start_workers(
            self.config, dramatiq_pg.SETUP, processes, self._log_dir, f"bare-worker-{processes}p"
        )
        return self.workers

    async def ready(self) -> None:
        await table.reset(self.dsn)
        await wait_ready(self, "/openapi.json")

    async def workers_ready(self, processes: int) -> None:
        """Each Dramatiq worker process logs this line once it consumes."""
        assert self.workers is not None
        workers = self.workers

        async def booted() -> int:
            return workers.log_path.read_text(errors="replace").count(DRAMATIQ_READY)

        await wait_for(booted, lambda count: count >= processes, timeout=READY_SECONDS, what="Dramatiq workers ready")


@contextlib.contextmanager
def bare(log_dir: Path) -> Iterator[Bare]:
    with services.scratch_database() as url, services.scratch_queue("bare") as queue:
        deployment = Bare(WorkerConfig(services.AMQP_URL, queue, services.dsn(url)), log_dir)
        try:
            yield deployment
        finally:
            stop(deployment.workers, deployment.api)
