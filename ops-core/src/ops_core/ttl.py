"""A per-process cache whose entries expire: how long the API and the workers trust a row they read.

Keys and tenants' quotas change rarely and are read on every submit; each is
read again once its entry is ``seconds`` old, which bounds how long a change
(a revoked key, a new quota) takes to apply everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Entries for unknown keys are cached too (a guesser must not cost a query each); this keeps them finite.
MAX_ENTRIES = 10_000


class TtlCache(Generic[K, V]):
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._entries: dict[K, tuple[V, float]] = {}

    async def get(self, key: K, load: Callable[[K], Awaitable[V]]) -> V:
        """The cached value for ``key``, or ``load(key)`` once the entry is missing or expired."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        value = await load(key)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (value, self._clock() + self._seconds)
        return value

    def clear(self) -> None:
        self._entries.clear()
