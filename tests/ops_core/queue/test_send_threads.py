"""The publisher's send threads: results and errors come back to the caller, and only a fixed few threads ever run."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ops_core.queue.send_threads import SendThreads

DEADLINE = 5.0


async def test_results_and_exceptions_come_back_to_the_caller() -> None:
    threads = SendThreads(2, "test-send")

    async with asyncio.timeout(DEADLINE):
        assert await threads.run(lambda: 42) == 42
        with pytest.raises(ConnectionError, match="refused"):
            await threads.run(_refuse)
    await asyncio.to_thread(threads.close)


async def test_sends_run_on_a_fixed_set_of_threads_off_the_loop() -> None:
    threads = SendThreads(3, "test-send")

    async with asyncio.timeout(DEADLINE):
        names = await asyncio.gather(*(threads.run(lambda: threading.current_thread().name) for _ in range(50)))

    assert set(names) <= {"test-send-0", "test-send-1", "test-send-2"}
    assert threading.current_thread().name not in names
    await asyncio.to_thread(threads.close)


async def test_close_lets_queued_sends_finish_and_refuses_new_ones() -> None:
    threads = SendThreads(1, "test-send")
    release = threading.Event()
    started = threading.Event()
    done: list[int] = []

    def slow(n: int) -> None:
        started.set()
        release.wait(DEADLINE)
        done.append(n)

    pending = [asyncio.ensure_future(threads.run(lambda n=n: slow(n))) for n in range(3)]
    # The tasks queue their sends in one loop iteration, so once the first runs all three are queued.
    assert await asyncio.to_thread(started.wait, DEADLINE)
    closing = asyncio.ensure_future(asyncio.to_thread(threads.close))
    release.set()
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(closing, *pending)

    assert done == [0, 1, 2]
    with pytest.raises(RuntimeError, match="closed"):
        await threads.run(lambda: None)


def _refuse() -> None:
    raise ConnectionError("connection refused")
