"""Writes the events runs buffered during a long step, so a task's event stream stays current."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from ops_core.worker.recorder import EventRecorder

FLUSH_SECONDS = 1.0


class EventFlush:
    def __init__(self, recorders: Callable[[], Iterable[EventRecorder]]) -> None:
        self._recorders = recorders

    async def __call__(self) -> None:
        # All at once, so the store sends them as one statement; only runs with events waiting, since
        # each flush is a task of its own and a thousand runs mostly wait on their model.
        flushes = [recorder.flush() for recorder in self._recorders() if recorder.pending]
        for outcome in await asyncio.gather(*flushes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
