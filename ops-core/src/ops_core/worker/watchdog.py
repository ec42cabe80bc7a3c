"""Ends a worker process whose event loop has stopped turning.

Every run of a process lives on one loop, and a run's ``timeout_seconds`` is
enforced by a timer on that loop; so code that holds the loop without
awaiting (a CPU-bound async tool, a pathological parse) stops every run of
the process, and no timeout can end it. Nothing inside the process can
interrupt it either. This thread notices that the loop has not turned for
``limit`` seconds and ends the process, after logging why and where the loop
was stuck; the pool's supervisor starts a new process, and the reaper
requeues the runs it held as ``worker_lost`` attempts, the same path as a
crash. A task that blocks its loop on every attempt so ends ``failed`` with
``worker_lost`` once its retries are spent, while the other runs of the
process are retried elsewhere.

The limit is the lease, and at least ``MIN_LIMIT_SECONDS``: a worker that
cannot make progress for a lease is lost, which is what a lapsed heartbeat
meant before the heartbeat moved to a thread of its own. Shorter stalls are
left alone: a burst of CPU, a garbage collection, or the first import of a
model provider's SDK on the loop (seconds on a busy machine), which with a
short lease would otherwise end a healthy process. A run that holds the loop
so overruns its timeout by at most the limit.

A sync tool runs in a thread: it shares the GIL (which the interpreter hands
round every few milliseconds) but never holds the loop, so this does not
apply to it; nor can anything stop such a thread: when its run times out,
the thread goes on until the tool returns.

Under ``opscore dev`` there is no supervisor (API and worker share the
process), so the watchdog only logs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
MIN_LIMIT_SECONDS = 10.0
EXIT_LOOP_STALLED = 70  # EX_SOFTWARE


def stall_limit(lease_seconds: float) -> float:
    """How long the loop may go without turning before the process is ended."""
    return max(lease_seconds, MIN_LIMIT_SECONDS)


class LoopWatchdog:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: float,
        *,
        describe: Callable[[], str],
        exit_process: bool = True,
        clock: Callable[[], float] = time.monotonic,
        exit: Callable[[int], object] = os._exit,
        check_every: float = TICK_SECONDS,
    ) -> None:
        self._loop = loop
        self._limit = limit
        self._describe = describe
        self._exit_process = exit_process
        self._clock = clock
        self._exit = exit
        self._check_every = check_every
        # The loop marks each turn this often: well inside the limit, so only a real stall exceeds it.
        self._tick_every = min(TICK_SECONDS, limit / 4)
        self._last_turn = clock()
        self._loop_thread: int | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported = False

    def start(self) -> None:
        """Call on the loop's own thread."""
        self._loop_thread = threading.get_ident()
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="opscore-loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Call on the loop's own thread."""
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join()

    def _tick(self) -> None:
        self._last_turn = self._clock()
        self._handle = self._loop.call_later(self._tick_every, self._tick)

    def check(self) -> bool:
        """One look at the loop; True if it has been stalled past the limit (and the process told to end)."""
        stalled = self._clock() - self._last_turn
        if stalled <= self._limit:
            self._reported = False
            return False
        if self._reported and not self._exit_process:
            return True
        self._reported = True
        where = self._stack()
        if self._exit_process:
            log.critical(
                "the event loop has not turned for %.1fs (limit %.1fs): ending this worker process so it is"
                " restarted and its runs are requeued. Runs: %s. The loop was at:\n%s",
                stalled,
                self._limit,
                self._describe(),
                where,
                extra={"stalled_seconds": round(stalled, 1)},
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            self._exit(EXIT_LOOP_STALLED)
        else:
            log.critical(
                "the event loop has not turned for %.1fs (limit %.1fs); its runs are stalled. Runs: %s."
                " The loop is at:\n%s",
                stalled,
                self._limit,
                self._describe(),
                where,
                extra={"stalled_seconds": round(stalled, 1)},
            )
        return True

    def _watch(self) -> None:
        while not self._stopped.wait(self._check_every):
            self.check()

    def _stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread) if self._loop_thread is not None else None
        return "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)"
