"""Stops runs whose task has a cancel request: one query every half second for all of a worker's runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from uuid import UUID

from ops_core.db.store import TaskStore

CANCEL_POLL_SECONDS = 0.5


class Cancellable(Protocol):
    def request_cancel(self) -> None: ...


class CancelPoll:
    def __init__(self, store: TaskStore, runs: Mapping[UUID, Cancellable]) -> None:
        """``runs`` is the runner's live view of the runs it holds."""
        self._store = store
        self._runs = runs

    async def __call__(self) -> None:
        if not self._runs:
            return
        for task_id in await self._store.cancel_requested(list(self._runs)):
            run = self._runs.get(task_id)
            if run is not None:
                run.request_cancel()
