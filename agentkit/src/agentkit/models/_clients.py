"""One SDK client per model and event loop.

Building an SDK client is costly: each one builds an HTTP client and a TLS
context (about a quarter of a second of CPU each on a small machine), and
building one per request also throws away its pooled keep-alive connections.
A client's connection pool belongs to the event loop that first used it, so a
model keeps one client per running loop and passes each request's timeout on
the call rather than on the client.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

C = TypeVar("C")


class LoopClients(Generic[C]):
    def __init__(self, build: Callable[[], C], close: Callable[[C], Awaitable[None]]) -> None:
        self._build = build
        self._close = close
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, C] = weakref.WeakKeyDictionary()

    def get(self) -> C:
        """The running loop's client, built on first use."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._build()
        return client

    async def aclose(self) -> None:
        """Close the running loop's client; clients of other loops go with their loops."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await self._close(client)
