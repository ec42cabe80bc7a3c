"""A running ops-core deployment for the live suite: API + workers as real processes over HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from ops_core.db import migrate
from tests.support import services
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import OPSCORE, ManagedProcess, free_port
from tests.support.proxy import TcpProxy
from tests.support.queues import delete_queues, dramatiq_queue_names
from tests.support.waiting import wait_for, wait_for_sync

TERMINAL = {"completed", "failed", "cancelled"}


class Deployment:
    """The processes of one deployment; module-scoped, so it holds no event-loop-bound objects."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        fake: FakeOpenAI,
        *,
        database: TcpProxy | None = None,
        broker: TcpProxy | None = None,
        direct_database_url: str | None = None,
        direct_amqp_url: str | None = None,
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.fake = fake
        self.api: ManagedProcess | None = None
        self.extra_apis: list[ManagedProcess] = []
        self.workers: list[ManagedProcess] = []
        # The proxies every process of this deployment goes through, when it was launched with them.
        self.database = database
        self.broker = broker
        # The services themselves, for the test's own checks, which must not go through a cut proxy.
        self.direct_database_url = direct_database_url or env["OPSCORE_DATABASE_URL"]
        self.direct_amqp_url = direct_amqp_url or env["OPSCORE_BROKER_URL"]

    @property
    def queue_name(self) -> str:
        return self.env["OPSCORE_QUEUE_NAME"]

    @property
    def api_url(self) -> str:
        return self.env["OPSCORE_API_URL"]

    def start_api(self) -> ManagedProcess:
        port = self.api_url.rsplit(":", 1)[1]
        self.api = ManagedProcess("api", ["api", "--port", port], self.env, self.log_dir).start()
        return self.api

    def start_extra_api(self) -> str:
        """Another ``opscore api`` process of this deployment, on a port of its own, ready; its base URL.

        For what must hold across API processes (each has its own key cache). Stopped with the deployment.
        """
        port = free_port()
        name = f"api-{len(self.extra_apis) + 2}"
        api = ManagedProcess(name, ["api", "--port", str(port)], self.env, self.log_dir)
        self.extra_apis.append(api.start())
        url = f"http://127.0.0.1:{port}"
        self.wait_ready(url=url)
        return url

    def start_worker(
        self, *, threads: int = 4, processes: int = 1, extra_env: dict[str, str] | None = None
    ) -> ManagedProcess:
        name = f"worker-{len(self.workers) + 1}"
        env = {**self.env, **(extra_env or {})}
        args = ["worker", "--processes", str(processes), "--threads", str(threads)]
        worker = ManagedProcess(name, args, env, self.log_dir)
        self.workers.append(worker.start())
        return worker

    @staticmethod
    def pool_pids(pool: ManagedProcess) -> set[int]:
        """The processes an ``opscore worker`` supervisor runs (its worker processes, and any helper of
        multiprocessing's): the workers register under these pids, never under the supervisor's."""
        try:
            return {child.pid for child in psutil.Process(pool.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def pool_of(self, worker_pid: int) -> ManagedProcess:
        """The live ``opscore worker`` process that supervises the worker process ``worker_pid``."""
        return next(p for p in self.workers if p.alive() and worker_pid in self.pool_pids(p))

    def logs(self) -> str:
        processes = [self.api, *self.extra_apis, *self.workers]
        parts = [f"--- {p.name} ---\n{p.log_tail()}" for p in processes if p is not None]
        return "\n".join(parts)

    def wait_ready(self, timeout: float = 60, *, url: str | None = None) -> None:
        """Until the API at ``url`` (the deployment's own by default) answers /readyz with 200."""

        def probe() -> int:
            try:
                return httpx.get(f"{url or self.api_url}/readyz", timeout=5).status_code
            except httpx.TransportError:
                return 0

        wait_for_sync(probe, lambda status: status == 200, timeout=timeout, what=f"API ready\n{self.logs()}")

    @property
    def headers(self) -> dict[str, str]:
        """The admin key every process of the deployment also has as OPSCORE_API_KEY."""
        return {"Authorization": f"Bearer {self.env['OPSCORE_API_KEY']}"}

    def client(self) -> httpx.AsyncClient:
        """A client with the admin key (every scope, every tenant)."""
        return httpx.AsyncClient(base_url=self.api_url, timeout=30, headers=self.headers)

    def create_key(self, tenant: str, *scopes: str) -> str:
        """A new key, made the way an operator makes one: ``opscore keys create``; its secret."""
        args = [OPSCORE, "keys", "create", "--tenant", tenant, *(a for s in scopes for a in ("--scope", s))]
        made = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60, check=True)
        return made.stdout.strip().splitlines()[-1]

    def live_workers(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.api_url}/v1/workers", timeout=10, headers=self.headers)
        return list(response.json()["items"])

    def wait_workers(self, count: int, timeout: float = 60) -> None:
        def probe() -> int:
            return len(self.live_workers())

        wait_for_sync(probe, lambda found: found >= count, timeout=timeout, what=f"{count} live workers\n{self.logs()}")

    def stop(self) -> None:
        for process in [*self.workers, *self.extra_apis, self.api]:
            if process is not None:
                process.stop()


class Stack:
    """One test's async view of a deployment, over HTTP."""

    def __init__(self, deployment: Deployment, client: httpx.AsyncClient) -> None:
        self.deployment = deployment
        self.client = client

    def logs(self) -> str:
        return self.deployment.logs()

    async def submit(self, expect: int = 202, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/tasks", json=body)
        assert response.status_code == expect, response.text
        return dict(response.json())

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def events(self, task_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/tasks/{task_id}/events")
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    async def wait_status(self, task_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        return await wait_for(
            lambda: self.task(task_id),
            lambda task: task["status"] in statuses,
            timeout=timeout,
            what=f"task {task_id} to reach {sorted(statuses)}\n{self.logs()}",
        )

    async def wait_workers(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        async def probe() -> list[dict[str, Any]]:
            return list((await self.client.get("/v1/workers")).json()["items"])

        return await wait_for(
            probe, lambda found: len(found) >= count, timeout=timeout, what=f"{count} live workers\n{self.logs()}"
        )


@contextlib.contextmanager
def launch(
    pg_admin_url: str,
    amqp_url: str,
    log_dir: Path,
    *,
    workers: int = 2,
    proxied: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """A fresh database and queue, a fake model server, the API and ``workers`` worker processes.

    With ``proxied`` every process reaches PostgreSQL and RabbitMQ through a
    :class:`TcpProxy` of this deployment's own (``deployment.database`` /
    ``deployment.broker``), so a test can cut either without touching the shared
    services. Everything is removed on exit, also when setup fails half-way.
    """
    with contextlib.ExitStack() as cleanup:
        database_url = services.create_database(pg_admin_url)
        cleanup.callback(services.drop_database, pg_admin_url, database_url)
        queue_name = f"opscore.e2e.{uuid.uuid4().hex[:12]}"
        cleanup.callback(delete_queues, amqp_url, dramatiq_queue_names(queue_name))
        fake = FakeOpenAI().start(free_port())
        cleanup.callback(fake.stop)
        database = broker = None
        process_db, process_amqp = database_url, amqp_url
        if proxied:
            database = TcpProxy.to(database_url).start()
            cleanup.callback(database.stop)
            broker = TcpProxy.to(amqp_url).start()
            cleanup.callback(broker.stop)
            process_db, process_amqp = database.via(database_url), broker.via(amqp_url)
        deployment = Deployment(
            {**stack_env(process_db, process_amqp, queue_name, fake), **(env or {})},
            log_dir,
            fake,
            database=database,
            broker=broker,
            direct_database_url=database_url,
            direct_amqp_url=amqp_url,
        )
        cleanup.callback(deployment.stop)
        migrate.upgrade(database_url)
        deployment.env["OPSCORE_API_KEY"] = deployment.create_key("ops", "admin")
        deployment.start_api()
        for _ in range(workers):
            deployment.start_worker()
        deployment.wait_ready()
        deployment.wait_workers(workers)
        yield deployment


def stack_env(database_url: str, amqp_url: str, queue_name: str, fake: FakeOpenAI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSCORE_", "OPENAI_", "ANTHROPIC_", "GEMINI_"))}
    env.update(
        {
            "OPSCORE_DATABASE_URL": database_url,
            "OPSCORE_BROKER_URL": amqp_url,
            "OPSCORE_QUEUE_NAME": queue_name,
            "OPSCORE_API_URL": f"http://127.0.0.1:{free_port()}",
            "OPSCORE_WORKER_CONCURRENCY": "8",
            "OPSCORE_HEARTBEAT_SECONDS": "1",
            "OPSCORE_LEASE_SECONDS": "10",
            "OPSCORE_RELAY_INTERVAL_SECONDS": "1",
            "OPSCORE_SHUTDOWN_GRACE_SECONDS": "5",
            "OPSCORE_RETRY_BACKOFF_SECONDS": "0.2",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "test-key-for-the-local-fake",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
