"""Approvals in the store, on both backends: suspend, decide, resume, expire, cancel."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from ops_core.db.approvals import ApprovalStore, Decision, NewApproval
from ops_core.db.models import Claim
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.domain import ApprovalStatus
from ops_core.errors import ApprovalNotFound, NotWaiting, TaskNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import TENANT, running_task

CHECKPOINT: dict[str, Any] = {"steps_completed": 0, "pending_approvals": [{"call_id": "c1"}]}
APPROVE = Decision(status=ApprovalStatus.APPROVED, decided_by="key1", reason="fine")
DENY = Decision(status=ApprovalStatus.DENIED, decided_by="key1", reason="no")


@pytest.fixture
def approvals(store: TaskStore) -> ApprovalStore:
    return ApprovalStore(store.engine)


def asked(call_id: str, *, step: int = 1, expires_in: float = 3600) -> NewApproval:
    return NewApproval(
        step=step,
        call_id=call_id,
        tool="send_email",
        arguments={"to": "a@example.com"},
        reason="tool 'send_email' requires approval",
        expires_at=utcnow() + timedelta(seconds=expires_in),
    )


async def waiting(store: TaskStore, approvals: ApprovalStore, *calls: NewApproval) -> Claim:
    claim = await running_task(store)
    suspended = await approvals.suspend(
        claim.task.id,
        claim.attempt,
        checkpoint=CHECKPOINT,
        approvals=calls or [asked("c1")],
        input_tokens=10,
        output_tokens=5,
    )
    assert suspended
    return claim


async def test_suspend_frees_the_attempt_and_keeps_the_checkpoint(store: TaskStore, approvals: ApprovalStore) -> None:
    claim = await waiting(store, approvals)

    task = await store.get(claim.task.id, tenant=TENANT)
    assert task.status is TaskStatus.WAITING and task.finished_at is None
    assert task.attempts == claim.attempt - 1, "waiting is not a failed attempt"
    assert task.checkpoint == CHECKPOINT and (task.input_tokens, task.output_tokens) == (10, 5)
    [pending] = await approvals.list(tenant=TENANT, status=ApprovalStatus.PENDING)
    assert (pending.call_id, pending.tool, pending.status) == ("c1", "send_email", ApprovalStatus.PENDING)
    events = await store.list_events(claim.task.id, tenant=TENANT)
    assert events[-1].payload["to"] == "waiting" and events[-1].payload["calls"] == ["c1"]
    # A waiting task is nobody's run: not an orphan, not expired, not running on a worker.
    assert await store.requeue_orphans(stale_after=0) == []
    assert await store.fail_expired(utcnow() + timedelta(days=1)) == []


async def test_suspend_is_fenced_on_the_attempt(store: TaskStore, approvals: ApprovalStore) -> None:
    claim = await running_task(store)
    stale = await approvals.suspend(
        claim.task.id,
        claim.attempt + 1,
        checkpoint=CHECKPOINT,
        approvals=[asked("c1")],
        input_tokens=0,
        output_tokens=0,
    )
    assert not stale
    assert (await store.get(claim.task.id, tenant=TENANT)).status is TaskStatus.RUNNING
    assert await approvals.list(tenant=EVERY_TENANT) == []


async def test_the_last_decision_resumes_the_task(store: TaskStore, approvals: ApprovalStore) -> None:
    claim = await waiting(store, approvals, asked("c1"), asked("c2"))

    first = await approvals.decide(claim.task.id, "c1", APPROVE, tenant=TENANT)
    assert first.task.status is TaskStatus.WAITING and first.approval.status is ApprovalStatus.APPROVED
    second = await approvals.decide(claim.task.id, "c2", DENY, tenant=TENANT)
    assert second.task.status is TaskStatus.PENDING and second.task.published_at is None

    decisions = await approvals.decisions(claim.task.id, 1)
    assert {k: (v.status, v.decided_by, v.decision_reason) for k, v in decisions.items()} == {
        "c1": (ApprovalStatus.APPROVED, "key1", "fine"),
        "c2": (ApprovalStatus.DENIED, "key1", "no"),
    }
    events = await store.list_events(claim.task.id, tenant=TENANT)
    decided = [e.payload for e in events if e.type == "approval_decided"]
    assert [(d["call_id"], d["decision"], d["decided_by"]) for d in decided] == [
        ("c1", "approved", "key1"),
        ("c2", "denied", "key1"),
    ]
    assert events[-1].payload["to"] == "pending"
    assert await approvals.list(tenant=TENANT, status=ApprovalStatus.PENDING) == []
    # It runs again as an ordinary pending task.
    assert await store.claim(claim.task.id, "w2") is not None


async def test_concurrent_decisions_resume_the_task_exactly_once(store: TaskStore, approvals: ApprovalStore) -> None:
    calls = [asked(f"c{i}") for i in range(6)]
    claim = await waiting(store, approvals, *calls)

    results = await asyncio.gather(*(approvals.decide(claim.task.id, c.call_id, APPROVE, tenant=TENANT) for c in calls))

    assert sum(r.task.status is TaskStatus.PENDING for r in results) == 1
    events = await store.list_events(claim.task.id, tenant=TENANT)
    assert sum(e.type == "status" and e.payload["to"] == "pending" for e in events) == 2  # created, resumed
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_decisions_refuse_what_cannot_be_decided(store: TaskStore, approvals: ApprovalStore) -> None:
    claim = await waiting(store, approvals, asked("c1"), asked("c2"))

    with pytest.raises(ApprovalNotFound):
        await approvals.decide(claim.task.id, "nope", APPROVE, tenant=TENANT)
    with pytest.raises(TaskNotFound):
        await approvals.decide(claim.task.id, "c1", APPROVE, tenant="someone-else")
    await approvals.decide(claim.task.id, "c1", APPROVE, tenant=TENANT)
    with pytest.raises(NotWaiting, match="already decided"):
        await approvals.decide(claim.task.id, "c1", DENY, tenant=TENANT)
    await approvals.decide(claim.task.id, "c2", APPROVE, tenant=TENANT)
    with pytest.raises(NotWaiting, match="pending"):
        await approvals.decide(claim.task.id, "c2", APPROVE, tenant=TENANT)
    with pytest.raises(ValueError):
        Decision(status=ApprovalStatus.DENIED, decided_by="x", arguments={"a": 1})


async def test_unanswered_calls_time_out_as_denied(store: TaskStore, approvals: ApprovalStore) -> None:
    soon = await waiting(store, approvals, asked("c1", expires_in=-1))
    later = await waiting(store, approvals, asked("c1", expires_in=3600))

    resumed = await approvals.expire()

    assert [t.id for t in resumed] == [soon.task.id]
    [timed_out] = (await approvals.decisions(soon.task.id, 1)).values()
    assert (timed_out.status, timed_out.decision_reason, timed_out.decided_by) == (
        ApprovalStatus.TIMED_OUT,
        "timed out",
        "timeout",
    )
    assert (await store.get(later.task.id, tenant=TENANT)).status is TaskStatus.WAITING
    assert await approvals.expire() == []


async def test_cancel_takes_a_waiting_task_at_once(store: TaskStore, approvals: ApprovalStore) -> None:
    claim = await waiting(store, approvals)

    cancelled = await store.request_cancel(claim.task.id, tenant=TENANT)

    assert cancelled.status is TaskStatus.CANCELLED and cancelled.finished_at is not None
    assert await approvals.list(tenant=TENANT, status=ApprovalStatus.PENDING) == []
    with pytest.raises(NotWaiting, match="cancelled"):
        await approvals.decide(claim.task.id, "c1", APPROVE, tenant=TENANT)
    assert await approvals.expire(utcnow() + timedelta(days=2)) == []
    # Retried by hand, it resumes its checkpoint and may ask again for the same call.
    retried = await store.retry(claim.task.id, tenant=TENANT)
    again = await store.claim(retried.id, "w2")
    assert again is not None
    assert await approvals.suspend(
        retried.id, again.attempt, checkpoint=CHECKPOINT, approvals=[asked("c1")], input_tokens=0, output_tokens=0
    )
    [pending] = await approvals.list(tenant=TENANT, status=ApprovalStatus.PENDING)
    assert pending.call_id == "c1"


async def test_a_started_task_given_back_keeps_its_start(store: TaskStore, approvals: ApprovalStore) -> None:
    # attempts goes back to 0 on the first wait; the schedule-to-start deadline must not apply again.
    claim = await running_task(store, schedule_to_start_seconds=1)
    await approvals.suspend(
        claim.task.id, claim.attempt, checkpoint=CHECKPOINT, approvals=[asked("c1")], input_tokens=0, output_tokens=0
    )
    await approvals.decide(claim.task.id, "c1", APPROVE, tenant=TENANT)

    assert await store.fail_unstarted(utcnow() + timedelta(hours=1)) == []
    assert await store.claim(claim.task.id, "w2") is not None


async def test_approvals_are_listed_per_tenant(store: TaskStore, approvals: ApprovalStore) -> None:
    mine = await waiting(store, approvals)
    other = await running_task(store, tenant="other")
    await approvals.suspend(
        other.task.id, other.attempt, checkpoint=CHECKPOINT, approvals=[asked("c9")], input_tokens=0, output_tokens=0
    )

    assert [a.task_id for a in await approvals.list(tenant=TENANT)] == [mine.task.id]
    assert {a.task_id for a in await approvals.list(tenant=EVERY_TENANT)} == {mine.task.id, other.task.id}
    assert [a.call_id for a in await approvals.list(tenant=EVERY_TENANT, task_id=other.task.id)] == ["c9"]


async def test_a_cancel_requested_while_running_wins_over_waiting(store: TaskStore, approvals: ApprovalStore) -> None:
    claim = await running_task(store)
    await store.request_cancel(claim.task.id, tenant=TENANT)

    suspended = await approvals.suspend(
        claim.task.id, claim.attempt, checkpoint=CHECKPOINT, approvals=[asked("c1")], input_tokens=0, output_tokens=0
    )

    assert not suspended
    assert (await store.get(claim.task.id, tenant=TENANT)).status is TaskStatus.RUNNING
    assert await approvals.list(tenant=TENANT) == []
