"""A fixed set of daemon threads that run blocking sends for async callers.

Why not ``ThreadPoolExecutor``: its ``submit`` takes two locks and a
semaphore (``_adjust_thread_count``) that the worker threads also take after
every item. With pika's threads busy on the GIL, that contention showed up as
~20 % of the event loop's time per submit under py-spy. Here the loop only
puts a tuple on a C-level ``SimpleQueue`` and awaits a future; a thread hands
the outcome back with ``call_soon_threadsafe``.

Why a fixed set: Dramatiq's ``RabbitmqBroker`` keeps one pika connection per
thread, so the same few threads keep reusing the same few connections.

Daemon threads: a process that exits without closing the publisher (a worker
process) must not hang on them; a send cut short is safe, because an
unconfirmed task stays unpublished and the relay sends it again.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

T = TypeVar("T")

Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class SendThreads:
    def __init__(self, threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._size = threads
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, send: Callable[[], T]) -> T:
        """Run ``send`` on one of the threads; its exception, if any, is raised here."""
        if not self._threads:
            self._start()  # on first use: building a publisher starts nothing
        if self._closed:
            raise RuntimeError("the send threads are closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((send, loop, future))
        return await future

    def close(self) -> None:
        """Let queued sends finish, then stop the threads (blocks: call it off the event loop)."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._threads or self._closed:
                return
            for index in range(self._size):
                thread = threading.Thread(target=self._work, name=f"{self._name}-{index}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            send, loop, future = job
            try:
                result = send()
            except BaseException as exc:
                outcome: tuple[Callable[[asyncio.Future[Any], Any], None], Any] = (_fail, exc)
            else:
                outcome = (_succeed, result)
            # The loop may be gone (closed at shutdown): nobody awaits the outcome then.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(outcome[0], future, outcome[1])


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
