"""The worker's side of remote agents (worker/remote.py): signed delivery through the executor, and the watch
that settles cancels, timeouts and lost leases. The agent's endpoint is an httpx MockTransport; what it
receives is checked with the ``standardwebhooks`` package's own verifier."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from standardwebhooks import Webhook

from ops_core.config import Settings
from ops_core.db.models import TASKS, Claim, Task
from ops_core.db.remote import RemoteAgentStore, remote_worker_id
from ops_core.db.store import TaskStore
from ops_core.lifecycle import RetryPolicy, TaskStatus
from ops_core.signing import new_secret
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.execute import Execution
from ops_core.worker.remote import RemoteAgents
from tests.ops_core.db.helpers import running_task
from tests.ops_core.worker.helpers import context

SECRET = new_secret()
AGENT = "remote-test"


class Endpoint:
    """The remote agent's URL: answers with ``status`` and keeps every verified webhook."""

    def __init__(self, status: Callable[[dict[str, Any]], int] = lambda message: 202) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.ids: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        message = Webhook(SECRET).verify(request.content, dict(request.headers))
        self.received.append(message)
        self.ids.append(request.headers["webhook-id"])
        return httpx.Response(self.status(message))


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def setup(
    store: TaskStore, tenant: str, endpoint: Endpoint, **task: Any
) -> tuple[RemoteAgents, Claim, list[uuid.UUID], Settings]:
    settings = Settings(
        database_url="sqlite+aiosqlite://", remote_callback_url="http://api.test/", remote_lease_seconds=60
    )
    agents = RemoteAgentStore(store.engine)
    await agents.register(
        tenant=tenant, name=AGENT, url="http://agent.test/hook", secret=SECRET, description="", model=None
    )
    republished: list[uuid.UUID] = []

    async def republish(task: Task, delay: float) -> None:
        republished.append(task.id)

    remote = RemoteAgents(
        store,
        agents,
        settings,
        policy=RetryPolicy(backoff_seconds=0.01),
        republish=republish,
        client=httpx.AsyncClient(transport=httpx.MockTransport(endpoint)),
    )
    claim = await running_task(store, tenant=tenant, agent=AGENT, **task)
    return remote, claim, republished, settings


async def run(store: TaskStore, remote: RemoteAgents, claim: Claim, settings: Settings) -> Task:
    ctx = replace(context(store, settings), remote=remote, policy=RetryPolicy(backoff_seconds=0.01))
    await Execution(ctx, claim, asyncio.Event()).run()
    return await store.get(claim.task.id, tenant=EVERY_TENANT)


async def types(store: TaskStore, task_id: uuid.UUID) -> list[str]:
    return [e.type for e in await store.list_events(task_id, tenant=EVERY_TENANT)]


async def test_a_claimed_task_is_delivered_signed_and_handed_over(store: TaskStore, tenant: str) -> None:
    endpoint = Endpoint()
    remote, claim, _, settings = await setup(store, tenant, endpoint)
    task = await run(store, remote, claim, settings)
    assert task.status is TaskStatus.RUNNING and task.worker_id == remote_worker_id(AGENT)
    [message] = endpoint.received
    assert message["type"] == "task" and message["attempt"] == 1 and message["goal"] == claim.task.goal
    assert message["callbacks"]["result"] == f"http://api.test/v1/remote/tasks/{claim.task.id}/result"
    assert endpoint.ids == [f"task_{claim.task.id}_1"]
    assert (await types(store, claim.task.id))[-1] == "remote_delivered"
    await remote.aclose()


async def test_a_failing_endpoint_fails_the_attempt_retryably_and_a_refusal_for_good(
    store: TaskStore, tenant: str
) -> None:
    down = Endpoint(lambda message: 503)
    remote, claim, _, settings = await setup(store, tenant, down)
    task = await run(store, remote, claim, settings)
    assert task.status is TaskStatus.PENDING and task.attempt_errors[-1]["type"] == "remote_delivery_failed"
    assert len(down.received) == 3 and len(set(down.ids)) == 1  # three tries, one webhook-id

    refusing = Endpoint(lambda message: 400)
    remote, claim, _, settings = await setup(store, f"{tenant}-b", refusing)
    task = await run(store, remote, claim, settings)
    assert task.status is TaskStatus.FAILED and task.error_type == "remote_delivery_failed"
    assert len(refusing.received) == 1


async def test_a_name_neither_local_nor_remote_fails_the_task(store: TaskStore, tenant: str) -> None:
    remote, _, _, settings = await setup(store, tenant, Endpoint())
    claim = await running_task(store, tenant=tenant, agent="nobody")
    task = await run(store, remote, claim, settings)
    assert task.status is TaskStatus.FAILED and task.error_type == "agent_error"


async def test_the_watch_delivers_a_cancel_and_ends_the_task_cancelled(store: TaskStore, tenant: str) -> None:
    endpoint = Endpoint(lambda message: 202 if message["type"] == "task" else 200)
    remote, claim, _, settings = await setup(store, tenant, endpoint)
    await run(store, remote, claim, settings)
    await remote()  # nothing to settle yet
    assert (await store.get(claim.task.id, tenant=EVERY_TENANT)).status is TaskStatus.RUNNING
    await store.request_cancel(claim.task.id, tenant=EVERY_TENANT)
    await asyncio.gather(remote(), remote())  # two workers' watches: one cancel webhook
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.CANCELLED
    cancels = [m for m in endpoint.received if m["type"] == "cancel"]
    assert cancels == [{"type": "cancel", "task_id": str(claim.task.id), "attempt": 1, "reason": "cancel requested"}]
    events = await store.list_events(claim.task.id, tenant=EVERY_TENANT)
    [note] = [e.payload for e in events if e.type == "remote_cancel"]
    assert note["delivered"] is True


async def test_the_watch_fails_a_task_past_its_timeout(store: TaskStore, tenant: str) -> None:
    endpoint = Endpoint()
    remote, claim, _, settings = await setup(store, tenant, endpoint, timeout_seconds=30)
    await run(store, remote, claim, settings)
    async with store.engine.begin() as conn:
        then = datetime.now(UTC) - timedelta(seconds=31)
        await conn.execute(update(TASKS).where(TASKS.c.id == claim.task.id).values(claimed_at=then))
    await remote()
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.FAILED and task.error_type == "timeout"
    assert [m["reason"] for m in endpoint.received if m["type"] == "cancel"] == ["timeout"]


async def test_a_lost_lease_is_retried_then_failed_when_no_retries_are_left(store: TaskStore, tenant: str) -> None:
    endpoint = Endpoint()
    remote, claim, republished, settings = await setup(store, tenant, endpoint, max_retries=1)
    await run(store, remote, claim, settings)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await RemoteAgentStore(store.engine).extend_lease(claim.task.id, 1, past)
    await remote()
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.PENDING and task.attempt_errors[-1]["type"] == "remote_agent_lost"
    assert republished == [claim.task.id]

    again = await store.claim(claim.task.id, "w2")
    assert again is not None and again.attempt == 2
    await run(store, remote, again, settings)
    await RemoteAgentStore(store.engine).extend_lease(claim.task.id, 2, past)
    await remote()
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.FAILED and task.error_type == "remote_agent_lost"
    assert [m["reason"] for m in endpoint.received if m["type"] == "cancel"] == ["lease expired"] * 2


async def test_a_cancel_the_agent_cannot_take_still_ends_the_task(store: TaskStore, tenant: str) -> None:
    endpoint = Endpoint(lambda message: 202 if message["type"] == "task" else 503)
    remote, claim, _, settings = await setup(store, tenant, endpoint)
    await run(store, remote, claim, settings)
    await store.request_cancel(claim.task.id, tenant=EVERY_TENANT)
    await remote()
    assert (await store.get(claim.task.id, tenant=EVERY_TENANT)).status is TaskStatus.CANCELLED
    assert len([m for m in endpoint.received if m["type"] == "cancel"]) == 3
    events = await store.list_events(claim.task.id, tenant=EVERY_TENANT)
    [note] = [e.payload for e in events if e.type == "remote_cancel"]
    assert note["delivered"] is False and "503" in note["error"]
