from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from ops_core.db import postgres
from ops_core.db.models import TASKS, NewEvent
from ops_core.db.store import TaskStore
from ops_core.domain import ErrorType
from ops_core.errors import InvalidRequest, LeaseLost, TaskNotFound
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.db.helpers import USAGE, make_task, new_task, running_task, unknown_id


async def test_create_get_and_creation_event(store: TaskStore) -> None:
    task = await make_task(store, input={"q": [1, 2]}, priority=3)
    got = await store.get(task.id, tenant=EVERY_TENANT)
    assert got.status is TaskStatus.PENDING
    assert (got.input, got.priority, got.attempts, got.last_event_seq) == ({"q": [1, 2]}, 3, 0, 1)
    assert got.published_at is None and got.attempt_errors == []
    [event] = await store.list_events(task.id, tenant=EVERY_TENANT)
    assert (event.seq, event.type, event.payload["to"]) == (1, "status", "pending")
    with pytest.raises(TaskNotFound):
        await store.get(unknown_id(), tenant=EVERY_TENANT)


async def test_idempotency_key_returns_existing(store: TaskStore) -> None:
    first, created = await store.create(new_task(idempotency_key="k"))
    again, created_again = await store.create(new_task(idempotency_key="k", goal="other"))
    assert created and not created_again
    assert again.id == first.id and again.goal == "say hi"


async def test_idempotency_race_creates_one_row(store: TaskStore) -> None:
    results = await asyncio.gather(*(store.create(new_task(idempotency_key="race")) for _ in range(10)))
    assert sum(created for _, created in results) == 1
    assert len({task.id for task, _ in results}) == 1
    async with store.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).where(TASKS.c.idempotency_key == "race"))).scalar()
    assert count == 1


async def test_list_pages_newest_first_without_gaps(store: TaskStore) -> None:
    made = [await make_task(store, agent="lister") for _ in range(7)]
    await make_task(store, agent="someone-else")
    seen, cursor = [], None
    while True:
        page = await store.list(tenant=EVERY_TENANT, agent="lister", limit=3, cursor=cursor)
        seen.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [t.id for t in seen] == [t.id for t in reversed(made)]
    keys = [(t.created_at, t.id) for t in seen]
    assert keys == sorted(keys, reverse=True)


async def test_list_filters_by_status(store: TaskStore) -> None:
    pending = await make_task(store)
    claim = await running_task(store)
    running = await store.list(tenant=EVERY_TENANT, status=TaskStatus.RUNNING, limit=10, cursor=None)
    assert [t.id for t in running.items] == [claim.task.id]
    assert [t.id for t in (await store.list(tenant=EVERY_TENANT, status=TaskStatus.PENDING, limit=10)).items] == [
        pending.id
    ]
    assert (await store.list(tenant=EVERY_TENANT, status=TaskStatus.PENDING, limit=1)).next_cursor is None


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", "WzEsMl0", "WyJ4IiwieSJd", "WyIyMDI0LTAxLTAxIiwiYWIiXQ"])
async def test_malformed_cursor_is_invalid_request(store: TaskStore, cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        await store.list(tenant=EVERY_TENANT, limit=5, cursor=cursor)


async def test_list_events_paging_and_unknown_task(store: TaskStore) -> None:
    claim = await running_task(store)
    await store.append_events(claim.task.id, 1, [NewEvent("tool_call", {"n": i}) for i in range(5)])
    events = await store.list_events(claim.task.id, after_seq=2, limit=3, tenant=EVERY_TENANT)
    assert [e.seq for e in events] == [3, 4, 5]
    assert await store.list_events(claim.task.id, after_seq=100, tenant=EVERY_TENANT) == []
    with pytest.raises(TaskNotFound):
        await store.list_events(unknown_id(), tenant=EVERY_TENANT)


async def test_outbox_due_and_mark_published(store: TaskStore) -> None:
    due = await make_task(store)
    claim = await running_task(store)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await store.schedule_retry(
        claim.task.id, 1, error_type="model_error", error_message="x", run_after=later, **USAGE
    )
    assert [t.id for t in await store.due_for_publish(limit=10)] == [due.id]
    assert {t.id for t in await store.due_for_publish(limit=10, now=later)} == {due.id, claim.task.id}
    await store.mark_published([due.id, claim.task.id])
    assert [t.id for t in await store.due_for_publish(limit=10, now=later)] == []
    assert (await store.get(due.id, tenant=EVERY_TENANT)).published_at is not None


async def test_a_task_published_long_ago_and_never_claimed_is_due_again(store: TaskStore) -> None:
    task = await make_task(store)
    await store.mark_published([task.id])
    published_at = (await store.get(task.id, tenant=EVERY_TENANT)).published_at
    assert published_at is not None
    before = published_at - timedelta(seconds=1)
    after = published_at + timedelta(seconds=1)

    assert await store.due_for_publish(limit=10, republish_before=before) == []
    assert [t.id for t in await store.due_for_publish(limit=10, republish_before=after)] == [task.id]

    await store.mark_published([task.id], republished_before=after)
    republished_at = (await store.get(task.id, tenant=EVERY_TENANT)).published_at
    assert republished_at is not None and republished_at > published_at
    # Without the window a published task is never republished, and a claimed one never is.
    await store.mark_published([task.id])
    assert (await store.get(task.id, tenant=EVERY_TENANT)).published_at == republished_at
    assert await store.claim(task.id, "w1") is not None
    assert await store.due_for_publish(limit=10, republish_before=datetime.now(UTC) + timedelta(hours=1)) == []


async def test_claim_once_then_none(store: TaskStore) -> None:
    task = await make_task(store)
    claim = await store.claim(task.id, "w1")
    assert claim is not None and claim.attempt == 1
    assert claim.task.status is TaskStatus.RUNNING and claim.task.worker_id == "w1"
    assert claim.task.started_at is not None and claim.task.attempts == 1
    assert await store.claim(task.id, "w2") is None
    assert await store.claim(unknown_id(), "w2") is None


async def test_concurrent_claims_one_winner(store: TaskStore) -> None:
    task = await make_task(store)
    claims = await asyncio.gather(*(store.claim(task.id, f"w{i}") for i in range(10)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    assert (await store.get(task.id, tenant=EVERY_TENANT)).attempts == 1
    statuses = [e.payload for e in await store.list_events(task.id, tenant=EVERY_TENANT) if e.type == "status"]
    assert [p["to"] for p in statuses] == ["pending", "running"]


async def test_a_duplicate_delivery_to_one_worker_is_claimed_once(store: TaskStore) -> None:
    # On PostgreSQL the requests share one batched statement, which must still give the task to one of them.
    task = await make_task(store)
    claims = await asyncio.gather(*(store.claim(task.id, "w1") for _ in range(5)))
    assert [c is not None for c in claims] == [True, False, False, False, False]
    assert (await store.get(task.id, tenant=EVERY_TENANT)).attempts == 1
    assert [e.seq for e in await store.list_events(task.id, tenant=EVERY_TENANT)] == [1, 2]


async def test_claims_and_completions_made_together_each_get_their_own_outcome(store: TaskStore) -> None:
    tasks = [await make_task(store) for _ in range(12)]
    stale = await running_task(store)
    assert await store.schedule_retry(
        stale.task.id, 1, error_type="model_error", error_message="x", run_after=datetime.now(UTC), **USAGE
    )
    claims = await asyncio.gather(
        *(store.claim(t.id, f"w{i % 2}") for i, t in enumerate(tasks)), store.claim(stale.task.id, "w0")
    )
    assert [c.attempt if c else None for c in claims] == [1] * 12 + [2]
    assert all(c.task.worker_id == f"w{i % 2}" for i, c in enumerate(claims[:12]) if c)

    def complete(i: int, task_id: Any, attempt: int) -> Any:
        events = [NewEvent("final_answer", {"text": f"answer {i}"})] * (i % 3)
        return store.complete(
            task_id, attempt, result={"i": i}, input_tokens=i, output_tokens=2 * i, reused_tokens=1, events=events
        )

    done = await asyncio.gather(*(complete(i, t.id, 1) for i, t in enumerate(tasks)), complete(99, stale.task.id, 1))
    assert done == [True] * 12 + [False]  # the stale attempt is fenced out of the batch it shared
    for i, t in enumerate(tasks):
        task = await store.get(t.id, tenant=EVERY_TENANT)
        assert task.status is TaskStatus.COMPLETED and task.result == {"i": i} and task.worker_id == f"w{i % 2}"
        assert (task.input_tokens, task.output_tokens, task.reused_tokens) == (i, 2 * i, 1)
        events = await store.list_events(t.id, tenant=EVERY_TENANT)
        assert [e.type for e in events] == ["status", "status", *["final_answer"] * (i % 3), "status"]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-1].payload == {"from": "running", "to": "completed", "reason": "completed", "attempt": 1}
    assert (await store.get(stale.task.id, tenant=EVERY_TENANT)).status is TaskStatus.RUNNING


async def test_stale_attempt_is_fenced_out(store: TaskStore) -> None:
    claim = await running_task(store)
    assert await store.schedule_retry(
        claim.task.id, 1, error_type="model_error", error_message="x", run_after=datetime.now(UTC), **USAGE
    )
    second = await store.claim(claim.task.id, "w2")
    assert second is not None and second.attempt == 2
    assert not await store.complete(claim.task.id, 1, result="zombie", **USAGE)
    assert not await store.fail(claim.task.id, 1, error_type="x", error_message="y", **USAGE)
    with pytest.raises(LeaseLost):
        await store.append_events(claim.task.id, 1, [NewEvent("tool_call", {})])
    with pytest.raises(LeaseLost):
        await store.save_checkpoint(claim.task.id, 1, {"step": 9}, 1, 1)
    assert await store.complete(claim.task.id, 2, result={"ok": True}, **USAGE)
    done = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert done.status is TaskStatus.COMPLETED and done.result == {"ok": True} and done.worker_id == "w2"
    assert not await store.complete(claim.task.id, 2, result="twice", **USAGE)


async def test_complete_appends_events_before_status(store: TaskStore) -> None:
    claim = await running_task(store)
    await store.save_checkpoint(
        claim.task.id, 1, {"step": 1}, 7, 3, events=[NewEvent("model_response", {"at": datetime.now(UTC)})]
    )
    saved = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert (saved.checkpoint, saved.input_tokens, saved.output_tokens) == ({"step": 1}, 7, 3)
    assert await store.complete(
        claim.task.id,
        1,
        result=[1, "two"],
        input_tokens=9,
        output_tokens=4,
        reused_tokens=2,
        events=[NewEvent("final_answer", {"text": "hi"})],
    )
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    # Writes add the tokens spent since the previous write: 7 + 9 and 3 + 4.
    assert (task.input_tokens, task.output_tokens, task.reused_tokens) == (16, 7, 2)
    assert task.finished_at is not None and task.result == [1, "two"]
    events = await store.list_events(task.id, tenant=EVERY_TENANT)
    assert [e.type for e in events] == ["status", "status", "model_response", "final_answer", "status"]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[-1].payload["to"] == "completed" and events[-1].attempt == 1
    assert isinstance(events[2].payload["at"], str)


async def test_fail_records_attempt_error(store: TaskStore) -> None:
    claim = await running_task(store)
    assert await store.fail(claim.task.id, 1, error_type="tool_error", error_message="boom", **USAGE)
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.FAILED
    assert (task.error_type, task.error_message) == ("tool_error", "boom")
    [entry] = task.attempt_errors
    assert (entry["attempt"], entry["type"], entry["message"]) == (1, "tool_error", "boom")
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None


async def test_schedule_retry_keeps_checkpoint_and_errors(store: TaskStore) -> None:
    claim = await running_task(store)
    await store.save_checkpoint(claim.task.id, 1, {"step": 2}, 1, 1)
    await store.mark_published([claim.task.id])
    run_after = datetime.now(UTC) + timedelta(seconds=30)
    assert await store.schedule_retry(
        claim.task.id, 1, error_type="model_error", error_message="429", run_after=run_after, **USAGE
    )
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.PENDING and task.published_at is None and task.worker_id == "w1"
    assert task.run_after == run_after and task.checkpoint == {"step": 2}
    assert [e["type"] for e in task.attempt_errors] == ["model_error"]
    second = await store.claim(task.id, "w1")
    assert second is not None and second.attempt == 2 and second.task.started_at == claim.task.started_at
    assert await store.fail(task.id, 2, error_type="model_error", error_message="again", **USAGE)
    assert [e["attempt"] for e in (await store.get(task.id, tenant=EVERY_TENANT)).attempt_errors] == [1, 2]


async def test_finish_cancelled(store: TaskStore) -> None:
    claim = await running_task(store)
    assert await store.finish_cancelled(claim.task.id, 1, **USAGE)
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.CANCELLED and task.error_type == ErrorType.CANCELLED
    assert task.finished_at is not None


async def test_hand_back_does_not_consume_an_attempt(store: TaskStore) -> None:
    claim = await running_task(store)
    await store.mark_published([claim.task.id])
    assert await store.hand_back(claim.task.id, 1, reason="worker_shutdown")
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    assert (task.status, task.attempts, task.published_at, task.worker_id) == (TaskStatus.PENDING, 0, None, "w1")
    again = await store.claim(task.id, "w2")
    assert again is not None and again.attempt == 1
    assert not await store.hand_back(task.id, 0, reason="stale")
    last = (await store.list_events(task.id, tenant=EVERY_TENANT))[-1]
    assert last.payload == {"from": "pending", "to": "running", "reason": "claimed", "worker_id": "w2", "attempt": 1}


async def test_concurrent_appends_get_contiguous_seqs(store: TaskStore) -> None:
    claim = await running_task(store)
    batches = [[NewEvent("tool_call", {"batch": b, "i": i}) for i in range(3)] for b in range(15)]
    await asyncio.gather(*(store.append_events(claim.task.id, 1, batch) for batch in batches))
    events = await store.list_events(claim.task.id, tenant=EVERY_TENANT)
    assert [e.seq for e in events] == list(range(1, 2 + 45 + 1))
    for b in range(15):  # each batch's events stay together and in order
        seqs = [e.seq for e in events if e.payload.get("batch") == b]
        assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert (await store.get(claim.task.id, tenant=EVERY_TENANT)).last_event_seq == 47


async def test_schedule_to_start_timeout(store: TaskStore) -> None:
    late = await make_task(store, schedule_to_start_seconds=0)
    assert await store.claim(late.id, "w1") is None
    task = await store.get(late.id, tenant=EVERY_TENANT)
    assert task.status is TaskStatus.FAILED and task.error_type == ErrorType.SCHEDULE_TO_START_TIMEOUT
    assert task.attempts == 0 and task.finished_at is not None
    assert (await store.list_events(late.id, tenant=EVERY_TENANT))[-1].payload["to"] == "failed"
    timely = await make_task(store, schedule_to_start_seconds=3600)
    assert await store.claim(timely.id, "w1") is not None


async def test_datetimes_are_utc_aware(store: TaskStore) -> None:
    claim = await running_task(store)
    await store.complete(claim.task.id, 1, result=None, **USAGE)
    task = await store.get(claim.task.id, tenant=EVERY_TENANT)
    for value in (task.created_at, task.updated_at, task.started_at, task.claimed_at, task.finished_at):
        assert value is not None and value.utcoffset() == timedelta(0)
    for event in await store.list_events(task.id, tenant=EVERY_TENANT):
        assert event.created_at.utcoffset() == timedelta(0)


async def test_naive_datetime_is_rejected(store: TaskStore) -> None:
    claim = await running_task(store)
    with pytest.raises(Exception, match="naive datetime"):
        await store.schedule_retry(
            claim.task.id,
            1,
            error_type="x",
            error_message="y",
            run_after=datetime(2030, 1, 1),  # noqa: DTZ001 - naive on purpose
            **USAGE,
        )


@pytest.mark.integration
async def test_claims_and_completions_made_together_share_a_statement(
    pg_store: TaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    checkout = pg_store._db  # type: ignore[attr-defined]

    class Counted:
        def __init__(self, db: Any) -> None:
            self._db = db

        async def fetch(self, sql: str, *args: Any) -> Any:
            statements.append(sql)
            return await self._db.fetch(sql, *args)

    @asynccontextmanager
    async def counting() -> AsyncIterator[Any]:
        async with checkout() as db:
            yield Counted(db)

    tasks = [await make_task(pg_store) for _ in range(20)]
    monkeypatch.setattr(pg_store, "_db", counting)
    claims = await asyncio.gather(*(pg_store.claim(t.id, "w1") for t in tasks))
    assert all(claims)
    await asyncio.gather(*(pg_store.append_events(t.id, 1, [NewEvent("step", {})]) for t in tasks))
    await asyncio.gather(*(pg_store.save_checkpoint(t.id, 1, {"step": 1}, 1, 1) for t in tasks))
    done = await asyncio.gather(*(pg_store.complete(t.id, 1, result=None, **USAGE) for t in tasks))
    assert all(done)
    # Each batch goes out as soon as it is asked for, and all 20 were asked for in one loop iteration.
    assert statements == [postgres.CLAIM_SQL, postgres.APPEND, postgres.CHECKPOINT, postgres.COMPLETE]
    assert [e.seq for e in await pg_store.list_events(tasks[7].id, tenant=EVERY_TENANT)] == [1, 2, 3, 4]
