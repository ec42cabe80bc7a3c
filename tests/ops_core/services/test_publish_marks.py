"""The publish-mark batcher: flushes by size, by time and on shutdown, survives outages, never blocks a submit."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from ops_core.config import load_settings
from ops_core.db import migrate
from ops_core.errors import DatabaseUnavailable
from ops_core.runtime import Runtime
from ops_core.services.publish_marks import PublishMarks
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT

DEADLINE = 5.0
NEVER = 3600.0  # an interval no test waits for: a flush must have another cause


class Store:
    """Records each flushed batch; fails the first ``failures`` flushes as an unreachable database would."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[uuid.UUID]] = []
        self.attempts = 0
        self.failures = failures
        self.flushed = asyncio.Event()
        self.attempted = asyncio.Event()

    async def mark_published(self, ids: Sequence[uuid.UUID]) -> None:
        self.attempts += 1
        self.attempted.set()
        if self.attempts <= self.failures:
            raise DatabaseUnavailable("the database is unreachable")
        self.batches.append(list(ids))
        self.flushed.set()

    async def wait_flushed(self, count: int) -> None:
        async with asyncio.timeout(DEADLINE):
            while sum(len(batch) for batch in self.batches) < count:
                self.flushed.clear()
                await self.flushed.wait()


def ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


async def test_a_full_batch_is_flushed_without_waiting_for_the_interval() -> None:
    store = Store()
    marks = PublishMarks(store.mark_published, interval=NEVER, max_batch=3)
    batch = ids(3)
    for task_id in batch:
        marks.add(task_id)

    await store.wait_flushed(3)

    assert store.batches == [batch]
    await marks.close()


async def test_a_partial_batch_is_flushed_after_the_interval() -> None:
    store = Store()
    marks = PublishMarks(store.mark_published, interval=0.01, max_batch=200)
    batch = ids(2)
    for task_id in batch:
        marks.add(task_id)

    await store.wait_flushed(2)

    assert store.batches == [batch]
    await marks.close()


async def test_more_than_a_batch_goes_out_in_batches_of_at_most_max_batch() -> None:
    store = Store()
    marks = PublishMarks(store.mark_published, interval=NEVER, max_batch=2)
    all_ids = ids(5)
    for task_id in all_ids:
        marks.add(task_id)

    await store.wait_flushed(4)
    await marks.close()

    assert [len(batch) for batch in store.batches] == [2, 2, 1]
    assert [task_id for batch in store.batches for task_id in batch] == all_ids


async def test_close_flushes_what_is_left() -> None:
    store = Store()
    marks = PublishMarks(store.mark_published, interval=NEVER, max_batch=200)
    batch = ids(3)
    for task_id in batch:
        marks.add(task_id)

    await marks.close()

    assert store.batches == [batch]
    marks.add(uuid.uuid4())  # after close: ignored (the relay republishes it), never an error
    assert marks.pending == 0


async def test_ids_are_kept_while_the_database_is_down() -> None:
    store = Store(failures=3)
    marks = PublishMarks(store.mark_published, interval=0.01, max_batch=200)
    first = ids(2)
    for task_id in first:
        marks.add(task_id)

    await store.wait_flushed(2)
    marks.add(later := uuid.uuid4())
    await store.wait_flushed(3)

    assert store.attempts >= 4
    assert store.batches[0] == first
    assert store.batches[-1] == [later]
    await marks.close()


async def test_the_buffer_is_bounded_during_an_outage_and_the_drop_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(failures=1_000_000)
    marks = PublishMarks(store.mark_published, interval=NEVER, max_batch=2, max_pending=4)
    all_ids = ids(6)
    for task_id in all_ids[:5]:
        marks.add(task_id)
    assert marks.pending == 4  # the oldest went first

    async with asyncio.timeout(DEADLINE):
        await store.attempted.wait()  # a full batch woke the flusher; its ids are back in the buffer
    marks.add(all_ids[5])
    with caplog.at_level(logging.WARNING, logger="ops_core.services.publish_marks"):
        await marks.close()

    assert store.batches == []
    assert marks.pending == 0
    assert "dropped 1 publish marks" in caplog.text
    assert "dropping 4 publish marks at shutdown" in caplog.text


async def test_close_does_not_hang_on_a_database_that_never_answers() -> None:
    hang = asyncio.Event()

    async def never(ids: Sequence[uuid.UUID]) -> None:
        await hang.wait()

    marks = PublishMarks(never, interval=NEVER, flush_timeout=0.05)
    marks.add(uuid.uuid4())

    async with asyncio.timeout(DEADLINE):
        await marks.close()
    assert marks.pending == 0


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'marks.db'}", broker_url="memory://")
    await migrate.upgrade_async(settings)
    opened = Runtime.open(settings)
    yield opened
    await opened.close()


async def test_a_submit_never_waits_for_the_mark(runtime: Runtime) -> None:
    flushing = asyncio.Event()
    hang = asyncio.Event()

    async def stuck(ids: Sequence[uuid.UUID]) -> None:
        flushing.set()
        await hang.wait()

    runtime.tasks.publish_marks = PublishMarks(stuck, interval=0.0, flush_timeout=NEVER)

    async with asyncio.timeout(DEADLINE):
        await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal="one")
        await flushing.wait()
        second, created = await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal="two")  # while the flush hangs

    assert created
    assert (await runtime.store.get(second.id, tenant=EVERY_TENANT)).published_at is None
    hang.set()
    await runtime.tasks.publish_marks.close()


async def test_submitted_tasks_are_marked_published_by_the_runtime(runtime: Runtime) -> None:
    task, _ = await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal="hello")

    await runtime.tasks.close()  # the flush on shutdown, at the latest

    assert (await runtime.store.get(task.id, tenant=EVERY_TENANT)).published_at is not None
