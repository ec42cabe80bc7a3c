"""Live text between worker and API: joined per run and step, sent in batches, in pieces that fit NOTIFY."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from ops_core.live import PIECE_CHARS, LiveBuffer, LiveBus, LiveText, LocalBus, _pieces, open_bus


class Recording(LiveBus):
    def __init__(self) -> None:
        self.batches: list[list[LiveText]] = []

    async def publish(self, batch: Sequence[LiveText]) -> None:
        self.batches.append(list(batch))

    async def listen(self, listener: object) -> None:
        raise AssertionError("a worker only publishes")

    async def unlisten(self) -> None:
        raise AssertionError("a worker only publishes")


async def test_a_buffer_sends_each_runs_step_as_one_text_per_interval() -> None:
    bus = Recording()
    buffer = LiveBuffer(bus)
    a, b = uuid.uuid4(), uuid.uuid4()
    for piece in ("Hel", "lo", " world"):
        buffer.add(a, 1, 2, piece)
    buffer.add(b, 3, 1, "other")

    await buffer()
    await buffer()  # nothing new: nothing sent

    assert bus.batches == [[LiveText(a, 1, 2, "Hello world"), LiveText(b, 3, 1, "other")]]


async def test_the_local_bus_hands_text_to_its_listener_until_unlistened() -> None:
    bus = LocalBus()
    heard: list[LiveText] = []
    text = LiveText(uuid.uuid4(), 1, 1, "hi")
    await bus.publish([text])  # nobody listens: dropped, never stored
    await bus.listen(heard.append)
    await bus.publish([text])
    await bus.unlisten()
    await bus.publish([text])
    assert heard == [text]


def test_long_text_goes_in_pieces_that_fit_a_notification() -> None:
    text = LiveText(uuid.uuid4(), 1, 1, "é\x01" * PIECE_CHARS + "end")
    pieces = _pieces(text)
    assert "".join(p.text for p in pieces) == text.text and len(pieces) == 3
    assert all(len(p.payload().encode()) < 8000 for p in pieces)
    assert LiveText.parse(pieces[0].payload()) == pieces[0]


@pytest.mark.integration
async def test_postgres_carries_live_text_from_a_publisher_to_a_listener(pg_url: str) -> None:
    import asyncio

    from ops_core.config import Settings
    from ops_core.db.engine import create_engine

    engine = create_engine(Settings(database_url=pg_url))
    worker_side, api_side = open_bus(engine), open_bus(engine)
    heard: list[LiveText] = []
    text = LiveText(uuid.uuid4(), 2, 3, "x" * (PIECE_CHARS + 1))
    try:
        await api_side.listen(heard.append)
        await worker_side.publish([text])
        async with asyncio.timeout(30):  # a deadline, not a count of polls
            while len(heard) < 2:
                await asyncio.sleep(0.02)
        assert "".join(h.text for h in heard) == text.text
        assert {(h.task_id, h.attempt, h.step) for h in heard} == {(text.task_id, 2, 3)}
    finally:
        await api_side.unlisten()
        await engine.dispose()


async def test_text_a_stored_response_supersedes_is_not_sent() -> None:
    bus = Recording()
    buffer = LiveBuffer(bus)
    task_id = uuid.uuid4()
    buffer.add(task_id, 1, 1, "answered at once")
    buffer.add(task_id, 1, 2, "still writing")
    buffer.discard(task_id, 1, 1)

    await buffer()

    assert bus.batches == [[LiveText(task_id, 1, 2, "still writing")]]
