"""Sessions on both backends: the rows, their turns (derived from tasks), and one-at-a-time order.

A session's tasks share an internal, strict concurrency key (rules.py, slots): a
later task starts only once every earlier one has finished, whether the earlier
one runs, waits for a person, or waits for its retry's backoff.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from ops_core.db.access import AccessStore
from ops_core.db.approvals import ApprovalStore, NewApproval
from ops_core.db.models import Claim, Task
from ops_core.db.rules import utcnow
from ops_core.db.sessions import SessionStore, session_key
from ops_core.db.store import TaskStore
from ops_core.domain import SessionStatus
from ops_core.errors import InvalidRequest, SessionClosed, SessionNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import USAGE, make_task
from tests.ops_core.db.test_slots import claimed, due, ids, is_held


def tenant() -> str:
    """A tenant of the test's own: the PostgreSQL database keeps sessions across tests."""
    return f"t-{uuid.uuid4().hex[:12]}"


async def turns_of(store: TaskStore, session_id: uuid.UUID, count: int, who: str, **overrides: Any) -> list[Task]:
    """``count`` tasks of the session, as TaskService submits them (its key, limit 1)."""
    return [
        await make_task(
            store,
            tenant=who,
            goal=f"turn {i}",
            session_id=session_id,
            concurrency_key=session_key(session_id),
            concurrency_limit=1,
            **overrides,
        )
        for i in range(count)
    ]


async def answered(store: TaskStore, claim: Claim, result: Any) -> None:
    assert await store.complete(claim.task.id, claim.attempt, result=result, **USAGE)


async def test_a_session_is_created_read_listed_and_closed_within_its_tenant(store: TaskStore) -> None:
    sessions = SessionStore(store.engine)
    mine, theirs = tenant(), tenant()
    first = await sessions.create(tenant=mine, agent="echo", metadata={"user": "ada"})
    second = await sessions.create(tenant=mine, agent="echo", metadata={})
    other = await sessions.create(tenant=theirs, agent="echo", metadata={})

    read = await sessions.get(first.id, tenant=mine)
    assert (read.agent, read.metadata, read.status) == ("echo", {"user": "ada"}, SessionStatus.OPEN)
    with pytest.raises(SessionNotFound):
        await sessions.get(other.id, tenant=mine)

    page = await sessions.list(tenant=mine, limit=1)
    assert [s.id for s in page.items] == [second.id] and page.next_cursor is not None
    rest = await sessions.list(tenant=mine, limit=1, cursor=page.next_cursor)
    assert [s.id for s in rest.items] == [first.id] and rest.next_cursor is None

    closed = await sessions.close(first.id, tenant=mine)
    assert closed.status is SessionStatus.CLOSED and closed.closed_at is not None
    assert (await sessions.close(first.id, tenant=mine)).closed_at == closed.closed_at  # closing again: no change
    assert [s.id for s in (await sessions.list(tenant=mine, status=SessionStatus.OPEN)).items] == [second.id]
    with pytest.raises(SessionClosed, match="closed"):
        await sessions.open_session(first.id, tenant=mine)
    with pytest.raises(SessionNotFound):
        await sessions.close(other.id, tenant=mine)
    assert (await sessions.get(other.id, tenant=EVERY_TENANT)).tenant == theirs


async def test_a_malformed_cursor_is_refused(store: TaskStore) -> None:
    with pytest.raises(InvalidRequest, match="malformed cursor"):
        await SessionStore(store.engine).list(tenant=tenant(), cursor="not-a-cursor")


async def test_turns_are_the_sessions_tasks_and_history_only_its_completed_earlier_ones(store: TaskStore) -> None:
    sessions = SessionStore(store.engine)
    who = tenant()
    session = await sessions.create(tenant=who, agent="echo", metadata={})
    first, second, third, fourth = await turns_of(store, session.id, 4, who)
    unrelated = await make_task(store, tenant=who)

    await answered(store, await claimed(store, first), "my name is Ada")
    claim = await claimed(store, second)
    assert await store.fail(claim.task.id, claim.attempt, error_type="agent_error", error_message="boom", **USAGE)
    await answered(store, await claimed(store, third), {"structured": True})

    turns = await sessions.turns(session.id, tenant=who, limit=10)
    assert ids(turns.items) == ids([first, second, third, fourth]) and turns.total == 4
    assert [t.status for t in turns.items] == [
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.COMPLETED,
        TaskStatus.PENDING,
    ]
    newest = await sessions.turns(session.id, tenant=who, limit=2)
    assert ids(newest.items) == ids([third, fourth]) and newest.total == 4
    with pytest.raises(SessionNotFound):
        await sessions.turns(session.id, tenant=tenant(), limit=10)

    # The failed turn is no part of the conversation; only turns before the task count.
    assert ids(await sessions.history(fourth, limit=10)) == ids([first, third])
    assert ids(await sessions.history(fourth, limit=1)) == ids([third])
    assert ids(await sessions.history(third, limit=10)) == ids([first])
    assert await sessions.history(unrelated, limit=10) == []
    assert await sessions.has_later_task(third) and not await sessions.has_later_task(fourth)


async def test_a_sessions_tasks_run_one_at_a_time_in_submission_order(store: TaskStore) -> None:
    who = tenant()
    session = await SessionStore(store.engine).create(tenant=who, agent="echo", metadata={})
    first, second, third = await turns_of(store, session.id, 3, who)

    assert await is_held(store, third)
    running = await claimed(store, first)
    assert await is_held(store, second, "w2")
    assert await due(store, [first, second, third]) == []
    await answered(store, running, "one")
    assert ids(await due(store, [second, third])) == [second.id]
    running = await claimed(store, second, "w2")
    assert await is_held(store, third)
    await answered(store, running, "two")
    await claimed(store, third)


async def test_a_waiting_task_holds_its_session_unlike_a_plain_key(store: TaskStore) -> None:
    who = tenant()
    session = await SessionStore(store.engine).create(tenant=who, agent="echo", metadata={})
    first, second = await turns_of(store, session.id, 2, who)
    claim = await claimed(store, first)
    asked = NewApproval(
        step=1, call_id="c1", tool="send_email", arguments={}, reason="r", expires_at=utcnow() + timedelta(hours=1)
    )
    assert await ApprovalStore(store.engine).suspend(
        claim.task.id, claim.attempt, checkpoint={}, approvals=[asked], input_tokens=0, output_tokens=0
    )
    # A waiting task of a plain key frees its slot (test_slots); a session's next turn must wait for its answer.
    assert await due(store, [second]) == []
    assert await is_held(store, second)


async def test_a_task_waiting_for_its_retry_keeps_its_place_in_the_session(store: TaskStore) -> None:
    who = tenant()
    session = await SessionStore(store.engine).create(tenant=who, agent="echo", metadata={})
    first, second = await turns_of(store, session.id, 2, who)
    claim = await claimed(store, first)
    assert await store.schedule_retry(
        claim.task.id,
        claim.attempt,
        error_type="provider_error",
        error_message="429",
        run_after=utcnow() + timedelta(hours=1),
        **USAGE,
    )
    assert await due(store, [first, second]) == []
    assert await is_held(store, second)


async def test_a_failed_turn_lets_the_next_one_start(store: TaskStore) -> None:
    who = tenant()
    session = await SessionStore(store.engine).create(tenant=who, agent="echo", metadata={})
    first, second = await turns_of(store, session.id, 2, who)
    claim = await claimed(store, first)
    assert await store.fail(claim.task.id, claim.attempt, error_type="agent_error", error_message="boom", **USAGE)
    assert ids(await due(store, [second])) == [second.id]
    await claimed(store, second)


async def test_a_held_session_task_takes_no_tenant_slot(store: TaskStore) -> None:
    who = tenant()
    await AccessStore(store.engine).set_quotas(who, {"max_running": 2})
    session = await SessionStore(store.engine).create(tenant=who, agent="echo", metadata={})
    first, second = await turns_of(store, session.id, 2, who)
    plain = await make_task(store, tenant=who)
    await claimed(store, first)
    assert await is_held(store, second)
    # The tenant has two slots: the session holds one, its held second turn none, so the plain task starts.
    await claimed(store, plain)


async def test_two_sessions_run_side_by_side(store: TaskStore) -> None:
    who = tenant()
    sessions = SessionStore(store.engine)
    a = await sessions.create(tenant=who, agent="echo", metadata={})
    b = await sessions.create(tenant=who, agent="echo", metadata={})
    (a1,) = await turns_of(store, a.id, 1, who)
    (b1,) = await turns_of(store, b.id, 1, who)
    await claimed(store, a1)
    await claimed(store, b1, "w2")


async def test_concurrent_claims_of_a_sessions_tasks_start_only_its_oldest(store: TaskStore) -> None:
    who = tenant()
    session = await SessionStore(store.engine).create(tenant=who, agent="echo", metadata={})
    tasks = await turns_of(store, session.id, 8, who)

    claims = await asyncio.gather(*(store.claim(t.id, f"w{i % 4}") for i, t in enumerate(reversed(tasks))))

    assert {c.task.id for c in claims if c is not None} == {tasks[0].id}
