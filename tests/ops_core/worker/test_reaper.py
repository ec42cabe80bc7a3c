"""The reaper against a real store: what it settles, when it holds back, and that orphans go out at once."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from ops_core.config import Settings
from ops_core.db.approvals import ApprovalStore, NewApproval
from ops_core.db.models import Task
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.domain import ErrorType
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.heartbeat import Heartbeat
from ops_core.worker.lease import ReapGuard
from ops_core.worker.reaper import Reaper
from tests.ops_core.db.helpers import make_task, running_task
from tests.ops_core.worker.helpers import AGENT, Clock, age, orphan

LEASE = 10.0


class Published:
    def __init__(self) -> None:
        self.calls: list[tuple[uuid.UUID, TaskStatus, float]] = []

    async def __call__(self, task: Task, delay: float) -> None:
        self.calls.append((task.id, task.status, delay))


def _reaper(store: TaskStore, clock: Clock) -> tuple[Reaper, ReapGuard, Published]:
    guard = ReapGuard(LEASE, clock=clock)
    published = Published()
    return Reaper(store, guard, Settings(lease_seconds=LEASE), published, worker_id="me"), guard, published


async def test_orphans_wait_until_this_worker_has_been_healthy_for_a_lease_then_go_out_at_once(
    store: TaskStore,
) -> None:
    clock = Clock()
    reaper, guard, published = _reaper(store, clock)
    lost = await orphan(store, LEASE * 3)

    guard.heartbeat_succeeded()
    await reaper()  # just back from an outage (or just started): hold back
    assert (await store.get(lost, tenant=EVERY_TENANT)).status is TaskStatus.RUNNING

    clock.now += LEASE
    await reaper()
    requeued = await store.get(lost, tenant=EVERY_TENANT)
    assert requeued.status is TaskStatus.PENDING and requeued.attempts == 1
    assert requeued.attempt_errors[-1]["type"] == ErrorType.WORKER_LOST
    # Published by the reaper in the same pass, with no delay: not left for the relay's next pass.
    assert published.calls == [(lost, TaskStatus.PENDING, 0.0)]


async def test_an_orphan_out_of_retries_fails_as_worker_lost_and_is_not_published(store: TaskStore) -> None:
    clock = Clock()
    reaper, guard, published = _reaper(store, clock)
    lost = await orphan(store, LEASE * 3, max_retries=0)
    guard.heartbeat_succeeded()
    clock.now += LEASE

    await reaper()

    task = await store.get(lost, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.FAILED and task.error_type == ErrorType.WORKER_LOST
    assert published.calls == []


async def test_a_run_far_past_its_timeout_under_a_dead_worker_ends_timeout(store: TaskStore) -> None:
    clock = Clock()
    reaper, guard, _ = _reaper(store, clock)
    expired = await orphan(store, 60 + LEASE * 2, timeout_seconds=60)
    guard.heartbeat_succeeded()
    clock.now += LEASE

    await reaper()

    task = await store.get(expired, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.FAILED and task.error_type == ErrorType.TIMEOUT  # not another attempt


async def test_a_task_never_delivered_fails_at_its_schedule_to_start_deadline(store: TaskStore) -> None:
    reaper, _, _ = _reaper(store, Clock())
    late = await make_task(store, agent=AGENT, schedule_to_start_seconds=0)
    timely = await make_task(store, agent=AGENT, schedule_to_start_seconds=3600)

    await reaper()  # even before this worker may reap: a deadline is not a guess about liveness

    failed = await store.get(late.id, tenant=EVERY_TENANT)
    assert failed.status is TaskStatus.FAILED and failed.error_type == ErrorType.SCHEDULE_TO_START_TIMEOUT
    assert [e.payload["to"] for e in await store.list_events(late.id, tenant=EVERY_TENANT) if e.type == "status"][
        -1
    ] == "failed"
    assert (await store.get(timely.id, tenant=EVERY_TENANT)).status is TaskStatus.PENDING


class _Broken:
    async def heartbeat(self, worker_id: str) -> None:
        raise ConnectionError("database unreachable")


async def test_a_failed_heartbeat_stops_reaping(store: TaskStore) -> None:
    clock = Clock()
    guard = ReapGuard(LEASE, clock=clock)
    heartbeat = Heartbeat(Settings(lease_seconds=LEASE), "me", guard)
    await store.register_worker("me", "h", 1, 1)
    await heartbeat.beat(store)
    clock.now += LEASE
    assert guard.may_reap()

    with pytest.raises(ConnectionError):
        await heartbeat.beat(_Broken())  # type: ignore[arg-type]
    clock.now += LEASE
    assert not guard.may_reap()


async def test_a_worker_whose_own_heartbeat_row_is_late_does_not_requeue_its_own_runs(store: TaskStore) -> None:
    clock = Clock()
    reaper, guard, published = _reaper(store, clock)
    await store.register_worker("me", "h", 1, 1)
    claim = await running_task(store, worker="me", agent=AGENT)
    await age(store, "me", claim.task.id, LEASE * 3)  # as if its heartbeat writes had lagged under load
    guard.heartbeat_succeeded()
    clock.now += LEASE

    await reaper()

    assert (await store.get(claim.task.id, tenant=EVERY_TENANT)).status is TaskStatus.RUNNING
    assert published.calls == []


async def test_an_approval_nobody_answered_times_out_and_its_task_goes_out_at_once(store: TaskStore) -> None:
    approvals = ApprovalStore(store.engine)
    published = Published()
    reaper = Reaper(store, ReapGuard(LEASE, clock=Clock()), Settings(), published, worker_id="me", approvals=approvals)
    claim = await running_task(store)
    late = NewApproval(
        step=1, call_id="c1", tool="t", arguments={}, reason="r", expires_at=utcnow() - timedelta(seconds=1)
    )
    await approvals.suspend(
        claim.task.id, claim.attempt, checkpoint={}, approvals=[late], input_tokens=0, output_tokens=0
    )

    await reaper()  # no lease needed: a deadline that has passed has passed

    assert published.calls == [(claim.task.id, TaskStatus.PENDING, 0.0)]
    [decided] = await approvals.list(tenant=EVERY_TENANT, task_id=claim.task.id)
    assert decided.decision_reason == "timed out"
