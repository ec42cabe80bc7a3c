"""The remote agents' store (db/remote.py) on both backends, and the orphan reaper leaving their attempts alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ops_core.db.models import NewEvent
from ops_core.db.remote import RemoteAgentStore, remote_worker_id
from ops_core.db.store import TaskStore
from ops_core.errors import AgentExists
from ops_core.lifecycle import TaskStatus
from ops_core.signing import new_secret
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import running_task


@pytest.fixture
def agents(store: TaskStore) -> RemoteAgentStore:
    return RemoteAgentStore(store.engine)


def later(seconds: float = 300) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_registrations_are_per_tenant_and_names_unique(agents: RemoteAgentStore) -> None:
    tenant, other = f"t-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    secret = new_secret()
    made = await agents.register(
        tenant=tenant, name="echo", url="http://x/h", secret=secret, description="", model=None
    )
    assert (await agents.get(tenant, "echo")) == made
    with pytest.raises(AgentExists):
        await agents.register(tenant=tenant, name="echo", url="http://y/h", secret=secret, description="", model=None)
    await agents.register(tenant=other, name="echo", url="http://z/h", secret=secret, description="d", model="m:x")
    assert [a.url for a in await agents.list(tenant)] == ["http://x/h"]
    assert await agents.get(other, "nope") is None
    assert await agents.delete(tenant, "echo")
    assert not await agents.delete(tenant, "echo")
    assert (await agents.get(other, "echo")) is not None


async def test_hand_over_is_fenced_on_the_attempt_and_numbers_its_events(
    store: TaskStore, agents: RemoteAgentStore
) -> None:
    claim = await running_task(store)
    task_id = claim.task.id
    event = NewEvent("remote_delivered", {"agent": "echo"})
    assert not await agents.hand_over(task_id, claim.attempt + 1, agent="echo", lease_until=later(), events=[event])
    assert await agents.hand_over(task_id, claim.attempt, agent="echo", lease_until=later(), events=[event])
    task = await store.get(task_id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.RUNNING and task.worker_id == remote_worker_id("echo")
    events = await store.list_events(task_id, tenant=EVERY_TENANT)
    assert events[-1].type == "remote_delivered" and [e.seq for e in events] == list(range(1, len(events) + 1))
    # The worker's fenced writes still work for the attempt: callbacks write through them.
    await store.append_events(task_id, claim.attempt, [NewEvent("progress", {})])
    held = await agents.held()
    assert [(r.task_id, r.attempt, r.cancel_requested) for r in held] == [(task_id, claim.attempt, False)]


async def test_the_orphan_reaper_leaves_a_remote_agents_attempt_to_its_lease(
    store: TaskStore, agents: RemoteAgentStore
) -> None:
    await store.register_worker("gone", "h", 1, 2)
    remote = await running_task(store, worker="gone")
    local = await running_task(store, worker="gone")
    assert await agents.hand_over(remote.task.id, remote.attempt, agent="echo", lease_until=later(), events=[])
    await store.deregister_worker("gone")
    assert await store.requeue_orphans(stale_after=0) == [local.task.id]
    assert (await store.get(remote.task.id, tenant=EVERY_TENANT)).status is TaskStatus.RUNNING


async def test_one_caller_of_many_sends_the_cancel_and_settled_attempts_are_dropped(
    store: TaskStore, agents: RemoteAgentStore
) -> None:
    claim = await running_task(store)
    assert await agents.hand_over(claim.task.id, claim.attempt, agent="echo", lease_until=later(), events=[])
    taken = await asyncio.gather(*(agents.take_cancel(claim.task.id, claim.attempt) for _ in range(5)))
    assert sorted(taken) == [False, False, False, False, True]
    assert (await agents.held())[0].cancel_sent_at is not None
    assert await agents.drop_settled() == 0
    assert await store.finish_cancelled(claim.task.id, claim.attempt, input_tokens=0, output_tokens=0, reused_tokens=0)
    assert await agents.held() == []
    assert await agents.drop_settled() == 1


async def test_a_callback_id_is_accepted_once_until_forgotten_or_pruned(agents: RemoteAgentStore) -> None:
    key = f"{uuid.uuid4()}:msg_1"
    assert await agents.remember(key)
    assert not await agents.remember(key)
    await agents.forget(key)
    assert await agents.remember(key)
    await agents.prune_callbacks(later(1))
    assert await agents.remember(key)
