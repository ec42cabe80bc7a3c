"""Records ``published_at`` for published tasks in batches, off the request path.

Marking a task published is bookkeeping for the relay, not part of accepting
it: the row is committed and the message confirmed by RabbitMQ before the id
ever reaches this buffer. So a submit hands the id over and answers at once;
a background task writes every ~``interval`` seconds (or as soon as
``max_batch`` ids are waiting) one ``UPDATE … WHERE id IN (…)`` for all of
them, instead of one round trip and commit per request.

Why losing ids is safe: an id that never gets marked (the process dies before
a flush, the buffer overflows during a database outage, the final flush on
shutdown fails) leaves the task ``pending`` with ``published_at`` NULL, and
the workers' relay publishes it again. The duplicate message is harmless:
a claim is a conditional ``UPDATE … WHERE status = 'pending'``, so only one
delivery ever runs the task. A flush that fails (the database is down) keeps
its ids for the next one, up to ``max_pending``; beyond that the oldest are
dropped and the drop is logged.

The flusher starts on the first id, on the loop that is serving requests, so
building the service has no side effects; :meth:`PublishMarks.close` flushes
what is left and is called when the runtime closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from uuid import UUID

log = logging.getLogger(__name__)

Flush = Callable[[Sequence[UUID]], Awaitable[None]]

INTERVAL_SECONDS = 0.05
MAX_BATCH = 200
MAX_PENDING = 50_000
FLUSH_TIMEOUT_SECONDS = 10.0
MAX_RETRY_SECONDS = 2.0


class PublishMarks:
    def __init__(
        self,
        flush: Flush,
        *,
        interval: float = INTERVAL_SECONDS,
        max_batch: int = MAX_BATCH,
        max_pending: int = MAX_PENDING,
        flush_timeout: float = FLUSH_TIMEOUT_SECONDS,
    ) -> None:
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError("need 1 <= max_batch <= max_pending")
        self._flush = flush
        self._interval = interval
        self._max_batch = max_batch
        self._flush_timeout = flush_timeout
        self._pending: deque[UUID] = deque(maxlen=max_pending)
        self._dropped = 0
        self._has_ids = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failures = 0  # consecutive failed flushes: paces retries and logging during an outage

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, task_id: UUID) -> None:
        """Queue ``task_id`` to be marked published; never waits, never raises."""
        if self._closed:
            # Shutting down: the relay will republish it, which is harmless (see the module docstring).
            return
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1  # deque(maxlen) drops the oldest id on append
        self._pending.append(task_id)
        self._has_ids.set()
        if len(self._pending) >= self._max_batch:
            self._full.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="opscore-publish-marks")

    async def close(self) -> None:
        """Stop the flusher, then write whatever is still buffered (one bounded attempt)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        while self._pending:
            if not await self._flush_batch():
                log.warning("dropping %d publish marks at shutdown; the relay will republish", len(self._pending))
                self._pending.clear()

    async def _run(self) -> None:
        while True:
            await self._has_ids.wait()
            if len(self._pending) < self._max_batch:
                # Let the batch fill for one interval unless it fills up first.
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._full.wait()
            if not await self._flush_batch():
                # The database is down: back off rather than retry in a tight loop.
                await asyncio.sleep(min(self._interval * 2**self._failures, MAX_RETRY_SECONDS))

    async def _flush_batch(self) -> bool:
        count = min(len(self._pending), self._max_batch)
        batch = [self._pending.popleft() for _ in range(count)]
        if not self._pending:
            self._has_ids.clear()
        if len(self._pending) < self._max_batch:
            self._full.clear()
        if self._dropped:
            log.warning("dropped %d publish marks (buffer full); the relay will republish", self._dropped)
            self._dropped = 0
        try:
            async with asyncio.timeout(self._flush_timeout):
                await self._flush(batch)
        except BaseException as exc:
            # Back in front, oldest first; a cancelled flush may have committed, and marking twice is harmless.
            self._pending.extendleft(reversed(batch))
            self._has_ids.set()
            if not isinstance(exc, Exception):
                raise
            if self._failures == 0:
                log.warning("could not mark %d tasks published, will retry: %s", len(batch), exc)
            self._failures = min(self._failures + 1, 16)
            return False
        if self._failures:
            log.info("marking tasks published again after %d failed attempts", self._failures)
            self._failures = 0
        return True
