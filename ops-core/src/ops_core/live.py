"""Live text: a model's answer as it streams, from the worker running it to the API processes streaming its task.

Deltas are ephemeral: never stored, and superseded by the stored
``model_response`` event of their step. A worker gathers every run's deltas
in a :class:`LiveBuffer` and sends them all every :data:`LIVE_SECONDS`, as
one batch, so a streaming model costs one statement per interval per worker
process, not one per token.

* PostgreSQL (:class:`PostgresBus`): ``NOTIFY`` on one channel, and in each
  API process one ``LISTEN`` connection, open while any stream is.
* The embedded default (:class:`LocalBus`): API and worker share the process,
  so the batch is handed over in memory.
"""

from __future__ import annotations

import abc
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from ops_core.db.engine import database_errors

log = logging.getLogger(__name__)

LIVE_SECONDS = 0.1
CHANNEL = "opscore_live"
# NOTIFY payloads are limited to 8000 bytes: a piece of this many characters fits even if each is escaped.
PIECE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class LiveText:
    task_id: uuid.UUID
    attempt: int
    step: int
    text: str

    def payload(self) -> str:
        return json.dumps(
            {"t": self.task_id.hex, "a": self.attempt, "s": self.step, "x": self.text}, ensure_ascii=False
        )

    @classmethod
    def parse(cls, payload: str) -> LiveText:
        raw = json.loads(payload)
        return cls(uuid.UUID(hex=raw["t"]), int(raw["a"]), int(raw["s"]), str(raw["x"]))


Listener = Callable[[LiveText], None]


class LiveBus(abc.ABC):
    """Carries live text from workers to API processes; what it loses is lost (it is never stored)."""

    @abc.abstractmethod
    async def publish(self, batch: Sequence[LiveText]) -> None: ...

    @abc.abstractmethod
    async def listen(self, listener: Listener) -> None:
        """Deliver every batch published from now on to ``listener``, until :meth:`unlisten`."""

    @abc.abstractmethod
    async def unlisten(self) -> None: ...


class LocalBus(LiveBus):
    def __init__(self) -> None:
        self._listener: Listener | None = None

    async def publish(self, batch: Sequence[LiveText]) -> None:
        if self._listener is not None:
            for text in batch:
                self._listener(text)

    async def listen(self, listener: Listener) -> None:
        self._listener = listener

    async def unlisten(self) -> None:
        self._listener = None


class PostgresBus(LiveBus):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: asyncpg.Connection[Any] | None = None
        self._listener: Listener | None = None

    async def publish(self, batch: Sequence[LiveText]) -> None:
        payloads = [piece.payload() for text in batch for piece in _pieces(text)]
        async with database_errors():
            pooled = await self._engine.raw_connection()
            try:
                driver: asyncpg.Connection[Any] = pooled.driver_connection
                await driver.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads)
            finally:
                # Returning it may run the pool's reset, which awaits on the driver (see postgres.py).
                await greenlet_spawn(pooled.close)

    async def listen(self, listener: Listener) -> None:
        self._listener = listener
        if self._conn is not None and not self._conn.is_closed():
            return
        url = self._engine.url.set(drivername="postgresql")
        self._conn = await asyncpg.connect(url.render_as_string(hide_password=False))
        await self._conn.add_listener(CHANNEL, self._received)

    async def unlisten(self) -> None:
        conn, self._conn, self._listener = self._conn, None, None
        if conn is not None and not conn.is_closed():
            await conn.close()

    def _received(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if self._listener is not None:
            try:
                self._listener(LiveText.parse(payload))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("dropping a malformed live-text notification: %s", exc)


def _pieces(text: LiveText) -> list[LiveText]:
    return [
        LiveText(text.task_id, text.attempt, text.step, text.text[i : i + PIECE_CHARS])
        for i in range(0, max(len(text.text), 1), PIECE_CHARS)
    ]


def open_bus(engine: AsyncEngine) -> LiveBus:
    return PostgresBus(engine) if engine.dialect.name == "postgresql" else LocalBus()


class LiveBuffer:
    """A worker process's runs' deltas since the last send, joined per run and step."""

    def __init__(self, bus: LiveBus) -> None:
        self._bus = bus
        self._texts: dict[tuple[uuid.UUID, int, int], list[str]] = {}

    def add(self, task_id: uuid.UUID, attempt: int, step: int, text: str) -> None:
        self._texts.setdefault((task_id, attempt, step), []).append(text)

    def discard(self, task_id: uuid.UUID, attempt: int, step: int) -> None:
        self._texts.pop((task_id, attempt, step), None)

    async def __call__(self) -> None:
        if not self._texts:
            return
        texts, self._texts = self._texts, {}
        await self._bus.publish([LiveText(t, a, s, "".join(parts)) for (t, a, s), parts in texts.items()])
