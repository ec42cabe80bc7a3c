"""The loop watchdog: a loop held past the limit ends the process, with the reason and the place logged."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from ops_core.worker.watchdog import EXIT_LOOP_STALLED, LoopWatchdog
from tests.support.waiting import wait_for_sync

LIMIT = 0.3


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # stands for CPU-bound code that never awaits


def _watch(loop: asyncio.AbstractEventLoop, exits: list[int]) -> LoopWatchdog:
    dog = LoopWatchdog(loop, LIMIT, describe=lambda: "task-1, task-2", exit=exits.append, check_every=0.05)
    loop.call_soon_threadsafe(dog.start)
    return dog


def test_a_loop_held_past_the_limit_ends_the_process_and_says_where(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    exits: list[int] = []
    dog = _watch(loop, exits)
    with caplog.at_level(logging.CRITICAL, logger="ops_core.worker.watchdog"):
        loop.call_soon_threadsafe(_hold_the_loop, LIMIT * 6)
        wait_for_sync(lambda: list(exits), lambda found: bool(found), timeout=10, what="the watchdog to act")
    asyncio.run_coroutine_threadsafe(_stop(dog), loop).result(10)

    assert exits[0] == EXIT_LOOP_STALLED
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL][:1]
    assert "task-1, task-2" in record.getMessage()
    assert "_hold_the_loop" in record.getMessage()  # the stack of the loop thread, where it was stuck


def test_a_loop_that_keeps_turning_is_left_alone(loop: asyncio.AbstractEventLoop) -> None:
    exits: list[int] = []
    dog = _watch(loop, exits)
    # Short holds, each well under the limit, for several limits in a row.
    for _ in range(8):
        loop.call_soon_threadsafe(_hold_the_loop, LIMIT / 4)
        time.sleep(LIMIT / 2)
    assert exits == []
    asyncio.run_coroutine_threadsafe(_stop(dog), loop).result(10)


async def _stop(dog: LoopWatchdog) -> None:
    dog.stop()


def test_unsupervised_it_only_logs_once_per_stall(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    exits: list[int] = []
    dog = LoopWatchdog(loop, LIMIT, describe=lambda: "none", exit=exits.append, exit_process=False, check_every=0.05)
    loop.call_soon_threadsafe(dog.start)
    with caplog.at_level(logging.CRITICAL, logger="ops_core.worker.watchdog"):
        loop.call_soon_threadsafe(_hold_the_loop, LIMIT * 5)
        wait_for_sync(
            lambda: [r for r in caplog.records if r.levelno == logging.CRITICAL],
            lambda found: bool(found),
            timeout=10,
            what="the watchdog to log",
        )
        time.sleep(LIMIT * 5)  # the rest of the stall: checked ~25 more times
    asyncio.run_coroutine_threadsafe(_stop(dog), loop).result(10)
    assert exits == []
    assert len([r for r in caplog.records if r.levelno == logging.CRITICAL]) == 1
