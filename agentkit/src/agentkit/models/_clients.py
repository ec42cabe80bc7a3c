"""SDK clients per model and event loop, shared by concurrent requests.

Building an SDK client is costly: each one builds an HTTP client and a TLS
context (about a quarter of a second of CPU on a small machine), and building
one per request also throws away its pooled keep-alive connections. A
client's connection pool belongs to the event loop that first used it, so a
model keeps its clients per running loop and passes each request's timeout
on the call rather than on the client.

The SDKs' default async transport (httpx) costs about 4 ms of CPU per
request on a small machine; their aiohttp transport about 2 ms, which is what
lets one process keep a thousand slow requests in flight. It ships with the
provider extras, so :func:`aiohttp_installed` is normally true.

One client is not enough for a host with a thousand requests in flight:
httpcore scans every connection of its pool on each request, so the cost of
a request grows with the pool. A request therefore leases the least busy
client, and a new client is built only when every existing one already
carries ``per_client`` requests.
"""

from __future__ import annotations

import asyncio
import importlib.util
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

C = TypeVar("C")

PER_CLIENT = 100
"""Requests in flight per client before another is built (httpx keeps 100 idle connections per pool)."""


def aiohttp_installed() -> bool:
    """Whether the SDKs can use their aiohttp transport (the ``aiohttp`` extra)."""
    return importlib.util.find_spec("aiohttp") is not None


class _Slot(Generic[C]):
    __slots__ = ("client", "in_flight")

    def __init__(self, client: C) -> None:
        self.client = client
        self.in_flight = 0


class LoopClients(Generic[C]):
    def __init__(
        self, build: Callable[[], C], close: Callable[[C], Awaitable[None]], *, per_client: int = PER_CLIENT
    ) -> None:
        self._build = build
        self._close = close
        self._per_client = per_client
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Slot[C]]] = weakref.WeakKeyDictionary()
        self._closers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    @contextmanager
    def lease(self) -> Iterator[C]:
        """A client of the running loop for one request: the least busy, or a new one when all are full."""
        slots = self._loop_slots(asyncio.get_running_loop())
        slot = min(slots, key=lambda s: s.in_flight, default=None)
        if slot is None or slot.in_flight >= self._per_client:
            slot = _Slot(self._build())
            slots.append(slot)
        slot.in_flight += 1
        try:
            yield slot.client
        finally:
            slot.in_flight -= 1

    def _loop_slots(self, loop: asyncio.AbstractEventLoop) -> list[_Slot[C]]:
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = []
            # A host that never calls aclose() must not leak open sessions (aiohttp reports each one
            # it collects): asyncio.run() and asyncio.Runner cancel the tasks left when they finish,
            # and this one then closes the loop's clients.
            self._closers[loop] = loop.create_task(self._close_when_cancelled(loop, slots))
        return slots

    async def _close_when_cancelled(self, loop: asyncio.AbstractEventLoop, slots: list[_Slot[C]]) -> None:
        try:
            await loop.create_future()
        finally:
            self._closers.pop(loop, None)
            await self._close_all(slots)

    async def _close_all(self, slots: list[_Slot[C]]) -> None:
        closing, slots[:] = list(slots), []
        for slot in closing:
            await self._close(slot.client)

    def count(self) -> int:
        """Clients built for the running loop."""
        return len(self._slots.get(asyncio.get_running_loop(), []))

    async def aclose(self) -> None:
        """Close the running loop's clients; clients of other loops go with their loops."""
        loop = asyncio.get_running_loop()
        slots = self._slots.pop(loop, [])
        closer = self._closers.pop(loop, None)
        if closer is not None:
            closer.cancel()
        await self._close_all(slots)
