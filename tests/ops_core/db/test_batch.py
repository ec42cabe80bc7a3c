"""The group-commit batcher, against a fake ``send`` (no database)."""

from __future__ import annotations

import asyncio

import pytest

from ops_core.db.batch import Batcher


class Recorder:
    """A ``send`` that records its batches and can be held open to pile requests up behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, requests: list[int]) -> list[int]:
        self.batches.append(requests)
        await self.gate.wait()
        return [r * 10 for r in requests]


async def test_requests_made_together_go_as_one_batch_and_get_their_own_results() -> None:
    send = Recorder()
    batcher = Batcher(send)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert send.batches == [[0, 1, 2, 3, 4]]


async def test_a_lone_request_goes_out_at_once() -> None:
    send = Recorder()
    batcher = Batcher(send)
    assert await batcher.submit(7) == 70
    assert await batcher.submit(8) == 80
    assert send.batches == [[7], [8]]


async def test_requests_pile_up_behind_the_batches_in_flight() -> None:
    send = Recorder()
    send.gate.clear()
    batcher = Batcher(send, max_in_flight=2)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(3, 7)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert send.batches == [[1], [2]]  # both slots busy: 3..6 wait
    send.gate.set()
    assert await asyncio.gather(first, second, *rest) == [10, 20, 30, 40, 50, 60]
    assert send.batches == [[1], [2], [3, 4, 5, 6]]


async def test_batches_are_capped_at_max_size() -> None:
    send = Recorder()
    batcher = Batcher(send, max_size=2, max_in_flight=1)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert send.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def send(requests: list[int]) -> list[int]:
        calls.append(requests)
        if 0 in requests:
            raise ConnectionError("database gone")
        return requests

    batcher = Batcher(send)
    results = await asyncio.gather(batcher.submit(0), batcher.submit(1), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await batcher.submit(2) == 2
    assert calls == [[0, 1], [2]]


async def test_a_wrong_number_of_results_is_an_error_not_a_silent_mismatch() -> None:
    async def send(requests: list[int]) -> list[int]:
        return requests[:1]

    batcher = Batcher(send)
    with pytest.raises(RuntimeError, match="2 requests got 1 results"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))


async def test_a_request_cancelled_before_it_is_sent_is_left_out() -> None:
    send = Recorder()
    batcher = Batcher(send)
    kept = asyncio.ensure_future(batcher.submit(1))
    dropped = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)  # both are queued; the launch is scheduled for the next iteration
    dropped.cancel()
    assert await kept == 10
    assert send.batches == [[1]]


def test_limits_must_be_positive() -> None:
    async def send(requests: list[int]) -> list[int]:
        return requests

    with pytest.raises(ValueError, match="at least 1"):
        Batcher(send, max_size=0)
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(send, max_in_flight=0)
