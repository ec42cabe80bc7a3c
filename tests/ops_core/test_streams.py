"""The stream hub: one read of the heads wakes every watcher whose task moved; the bound; no leaks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from ops_core.db.models import EventHead
from ops_core.db.store import TaskStore
from ops_core.errors import StreamsFull
from ops_core.lifecycle import TaskStatus
from ops_core.streams import StreamHub


class Heads:
    """Stands in for the store: the heads a test sets, and how often they were read."""

    def __init__(self) -> None:
        self.heads: dict[uuid.UUID, EventHead] = {}
        self.reads = 0

    async def event_heads(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EventHead]:
        self.reads += 1
        return {task_id: self.heads[task_id] for task_id in task_ids if task_id in self.heads}


def hub(heads: Heads, *, max_subscribers: int = 10) -> StreamHub:
    store: TaskStore = heads  # type: ignore[assignment]
    return StreamHub(store, poll_seconds=3600, max_subscribers=max_subscribers)


async def test_one_read_wakes_only_the_watchers_whose_task_moved() -> None:
    heads = Heads()
    streams = hub(heads)
    moved, still = uuid.uuid4(), uuid.uuid4()
    heads.heads = {moved: EventHead(3, TaskStatus.RUNNING), still: EventHead(1, TaskStatus.PENDING)}
    with streams.watch(moved, 1) as a, streams.watch(moved, 1) as b, streams.watch(still, 1) as c:
        reads = heads.reads
        await streams.tick()
        assert heads.reads == reads + 1, "one read for every stream"
        assert a.changed.is_set() and b.changed.is_set() and not c.changed.is_set()


async def test_a_waiter_wakes_past_its_seq_and_on_the_end() -> None:
    heads = Heads()
    streams = hub(heads)
    task_id = uuid.uuid4()
    heads.heads[task_id] = EventHead(2, TaskStatus.RUNNING)
    with streams.watch(task_id, 2) as watch:
        waiting = asyncio.create_task(watch.wait_past(2))
        await streams.tick()
        await asyncio.sleep(0)
        assert not waiting.done(), "nothing new past seq 2"
        heads.heads[task_id] = EventHead(2, TaskStatus.CANCELLED)
        await streams.tick()
        await asyncio.wait_for(waiting, timeout=5)
        assert watch.finished
        heads.heads[task_id] = EventHead(3, TaskStatus.PENDING)  # retried by hand: not finished any more
        await streams.tick()
        assert not watch.finished


async def test_the_bound_refuses_a_stream_and_a_closed_one_frees_its_place() -> None:
    streams = hub(Heads(), max_subscribers=1)
    with streams.watch(uuid.uuid4(), 0):
        with pytest.raises(StreamsFull) as refused:
            streams.reserve()
        assert refused.value.status_code == 503
    assert streams.subscribers == 0
    streams.reserve()
