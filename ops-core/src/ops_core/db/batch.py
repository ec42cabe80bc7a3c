"""Group commit: requests for one statement that arrive together go to the database as one.

A busy worker claims and completes many tasks at once, each a one-row
statement. Sent one by one, every statement pays its own pool checkout, round
trip and commit (a WAL flush), and PostgreSQL's per-statement work competes
with the worker for the same cores. A :class:`Batcher` sends whatever arrived
while earlier batches were in flight as one statement over arrays: at low load
a request goes out on the next loop iteration (a batch of one, no added wait),
and under load the batches grow with it.

Every request still gets its own answer, and nothing is acknowledged before the
statement that carries it has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")

Send = Callable[[list[Request]], Awaitable[Sequence[Result]]]


class Batcher(Generic[Request, Result]):
    """Coalesces concurrent :meth:`submit` calls on one event loop into calls of ``send``.

    ``send`` gets the requests in arrival order and returns one result per
    request, in the same order. If it raises, every request in that batch
    raises the same error. A caller cancelled while its request still waits is
    left out of the batch; once sent, the request's effect stands.
    """

    def __init__(self, send: Send[Request, Result], *, max_size: int = 256, max_in_flight: int = 2) -> None:
        if max_size < 1 or max_in_flight < 1:
            raise ValueError("max_size and max_in_flight must be at least 1")
        self._send = send
        self._max_size = max_size
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[Request, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._batches: set[asyncio.Task[None]] = set()

    async def submit(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((request, future))
        if not self._scheduled and self._in_flight < self._max_in_flight:
            # Not at once: the other requests made in this loop iteration join the batch.
            self._scheduled = True
            loop.call_soon(self._launch)
        return await future

    def _launch(self) -> None:
        self._scheduled = False
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = [(r, f) for r, f in self._waiting[: self._max_size] if not f.done()]
            del self._waiting[: self._max_size]
            if batch:
                self._in_flight += 1
                sending = asyncio.create_task(self._run(batch))
                # The loop keeps only weak references to tasks.
                self._batches.add(sending)
                sending.add_done_callback(self._batches.discard)

    async def _run(self, batch: list[tuple[Request, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._send([request for request, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} requests got {len(results)} results")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._launch()
