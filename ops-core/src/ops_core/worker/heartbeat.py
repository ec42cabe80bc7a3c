"""Writes a worker's heartbeat from a thread of its own, on its own small loop and database connection.

A worker is presumed dead when its heartbeat is older than the lease, so the
heartbeat must not depend on anything a run can hold up. On the runs' loop, a
run that blocked the loop (CPU-bound code in an async tool, a pathological
parse) or a connection pool drained by a thousand runs' writes delayed it past
the lease, and live runs were requeued under a worker that was still running
them. Here the heartbeat needs only the GIL, which the interpreter hands
round every few milliseconds; a loop that stays blocked is the loop
watchdog's business (:mod:`ops_core.worker.watchdog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.store import TaskStore
from ops_core.worker.lease import ReapGuard

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0


def open_heartbeat_store(settings: Settings) -> TaskStore:
    """A store on an engine of its own with one connection: the heartbeat writes one row at a time."""
    return open_store(create_engine(settings.model_copy(update={"db_pool_size": 1})))


class Heartbeat:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        guard: ReapGuard,
        *,
        open_store: Callable[[Settings], TaskStore] = open_heartbeat_store,
    ) -> None:
        self._settings = settings
        self._worker_id = worker_id
        self._guard = guard
        self._open_store = open_store
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failing = False

    async def beat(self, store: TaskStore) -> None:
        """Write one heartbeat; a failure tells the reap guard this worker's view may be stale."""
        try:
            await store.heartbeat(self._worker_id)
        except Exception:
            self._guard.heartbeat_failed()
            raise
        self._guard.heartbeat_succeeded()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="opscore-heartbeat", daemon=True)
        self._thread.start()
        self._ready.wait(STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """Stop beating (the caller deregisters the worker next); blocks until the thread is done."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already finished
            loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT_SECONDS)

    def _main(self) -> None:
        # Daemon: a process ending without stop() (os._exit by the loop watchdog) must not wait for it.
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        store = self._open_store(self._settings)
        try:
            while not self._stop.is_set():
                await self._beat_once(store)
                try:
                    async with asyncio.timeout(self._settings.heartbeat_seconds):
                        await self._stop.wait()
                except TimeoutError:
                    pass
        finally:
            await store.engine.dispose()

    async def _beat_once(self, store: TaskStore) -> None:
        try:
            await self.beat(store)
        except Exception as exc:
            if not self._failing:
                log.warning("heartbeat failed, will keep trying: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("heartbeat written again")
            self._failing = False
