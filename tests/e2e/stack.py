"""A running ops-core deployment for the live suite: API + workers as real processes over HTTP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import ManagedProcess, free_port
from tests.support.waiting import wait_for, wait_for_sync

TERMINAL = {"completed", "failed", "cancelled"}


class Deployment:
    """The processes of one deployment; module-scoped, so it holds no event-loop-bound objects."""

    def __init__(self, env: dict[str, str], log_dir: Path, fake: FakeOpenAI) -> None:
        self.env = env
        self.log_dir = log_dir
        self.fake = fake
        self.api: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []

    @property
    def api_url(self) -> str:
        return self.env["OPSCORE_API_URL"]

    def start_api(self) -> ManagedProcess:
        port = self.api_url.rsplit(":", 1)[1]
        self.api = ManagedProcess("api", ["api", "--port", port], self.env, self.log_dir).start()
        return self.api

    def start_worker(self, *, threads: int = 4, extra_env: dict[str, str] | None = None) -> ManagedProcess:
        name = f"worker-{len(self.workers) + 1}"
        env = {**self.env, **(extra_env or {})}
        worker = ManagedProcess(name, ["worker", "--processes", "1", "--threads", str(threads)], env, self.log_dir)
        self.workers.append(worker.start())
        return worker

    def logs(self) -> str:
        parts = [f"--- {p.name} ---\n{p.log_tail()}" for p in [self.api, *self.workers] if p is not None]
        return "\n".join(parts)

    def wait_ready(self, timeout: float = 60) -> None:
        def probe() -> int:
            try:
                return httpx.get(f"{self.api_url}/readyz", timeout=5).status_code
            except httpx.TransportError:
                return 0

        wait_for_sync(probe, lambda status: status == 200, timeout=timeout, what=f"API ready\n{self.logs()}")

    def wait_workers(self, count: int, timeout: float = 60) -> None:
        def probe() -> int:
            return len(httpx.get(f"{self.api_url}/v1/workers", timeout=5).json()["items"])

        wait_for_sync(probe, lambda found: found >= count, timeout=timeout, what=f"{count} live workers\n{self.logs()}")

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
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
