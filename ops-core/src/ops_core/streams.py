"""Live event streams: every subscriber reads its own task's events, woken by one poll per API process.

A subscriber pulls its events from the store itself (``list_events`` after
the last seq it sent), so a client that reads slowly delays only itself:
nothing is queued for it, and the workers never wait for it. What tells it
there is something new is :class:`StreamHub`: one query per tick reads the
head (last seq and status) of every task this process streams, however many
subscribers watch them (and one more for the tenants' streams of status
changes: the newest event's id). Nothing is added to the workers' writes (no trigger,
no NOTIFY), so the drain rate does not depend on how many streams are open.

The stored log is the stream's truth: a subscriber that reconnects after the
seq it last received (SSE ``Last-Event-ID``) gets exactly what it missed, from
any API process, across worker crashes and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field

from ops_core.db.models import TaskEvent
from ops_core.db.store import TaskStore
from ops_core.domain import EventType
from ops_core.errors import StreamsFull
from ops_core.lifecycle import TaskStatus
from ops_core.live import LiveBus, LiveText
from ops_core.tenancy import TenantScope

log = logging.getLogger(__name__)

LIVE_BACKLOG = 256
PAGE = 500


@dataclass(eq=False)
class Watch:
    """One subscriber's view: how far it has read, and a wake-up when there is more.

    A task's stream watches its task (``seq`` is the task's event seq); a
    tenant's stream of status changes watches every event (``task_id`` None,
    ``seq`` an event row id), and filters what it reads.
    """

    task_id: uuid.UUID | None
    seq: int
    finished: bool = False
    # A tenant's stream: the newest event id at the last tick; every event up to it has been looked at
    # once the stream has read past its seq, so it skips what its filter left out.
    horizon: int = 0
    # Live text received and not yet sent: ephemeral, so only the newest pieces are kept.
    live: deque[LiveText] = field(default_factory=lambda: deque(maxlen=LIVE_BACKLOG))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_past(self, seq: int) -> None:
        """Until the task has an event after ``seq``, has finished, or has live text to send."""
        self.seq = seq
        if self.live:
            return
        self.changed.clear()
        await self.changed.wait()


class StreamHub:
    """The streams one API process serves, and the one poll that wakes them."""

    def __init__(
        self, store: TaskStore, *, poll_seconds: float, max_subscribers: int, live: LiveBus | None = None
    ) -> None:
        self._store = store
        self._live = live
        self._poll_seconds = poll_seconds
        self._max = max_subscribers
        self._watches: set[Watch] = set()
        self._poller: asyncio.Task[None] | None = None
        self.listening = False

    @property
    def subscribers(self) -> int:
        return len(self._watches)

    def reserve(self) -> None:
        """Refuse a new stream (503) when this process already serves its bound."""
        if len(self._watches) >= self._max:
            raise StreamsFull(f"this API process already serves {self._max} streams; try again later")

    @contextlib.contextmanager
    def watch(self, task_id: uuid.UUID | None, seq: int) -> Iterator[Watch]:
        self.reserve()
        watch = Watch(task_id, seq)
        self._watches.add(watch)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="stream-hub")
        try:
            yield watch
        finally:
            self._watches.discard(watch)

    async def _poll(self) -> None:
        # Runs while anyone watches; the next subscriber starts it again.
        try:
            while self._watches:
                await self._listen()
                try:
                    await self.tick()
                except Exception as exc:  # the database is briefly away: streams wait, the next tick retries
                    log.warning("stream poll failed: %s", exc)
                await asyncio.sleep(self._poll_seconds)
        finally:
            self.listening = False
            if self._live is not None:
                await self._live.unlisten()

    async def _listen(self) -> None:
        """Hear live text while anyone streams (again after a lost connection); without it, only stored events."""
        if self._live is None:
            return
        try:
            await self._live.listen(self._received)
        except Exception as exc:
            log.warning("live text unavailable: %s", exc)
            return
        self.listening = True

    @property
    def watches(self) -> list[Watch]:
        return list(self._watches)

    def _received(self, text: LiveText) -> None:
        for watch in list(self._watches):
            if watch.task_id == text.task_id:
                watch.live.append(text)
                watch.changed.set()

    async def tick(self) -> None:
        watches = list(self._watches)
        feeds = [w for w in watches if w.task_id is None]
        if feeds:
            newest = await self._store.last_event_id()
            for watch in feeds:
                watch.horizon = newest
                if newest > watch.seq:
                    watch.changed.set()
        tasks = [w for w in watches if w.task_id is not None]
        if not tasks:
            return
        heads = await self._store.event_heads(sorted({w.task_id for w in tasks if w.task_id is not None}))
        for watch in tasks:
            head = heads.get(watch.task_id) if watch.task_id is not None else None
            if head is None:
                continue
            # A finished task may be retried by hand: finished is re-read on every tick.
            watch.finished = head.status.is_terminal
            if head.last_event_seq > watch.seq or watch.finished:
                watch.changed.set()


async def follow_task(
    store: TaskStore, hub: StreamHub, task_id: uuid.UUID, tenant: TenantScope, seq: int
) -> AsyncGenerator[TaskEvent | LiveText]:
    """A task's events after ``seq`` in seq order, then live ones (with live text between them), until its
    terminal status event: what the SSE route and gRPC's WatchTask both send, each in its own format.

    Close it (``contextlib.aclosing``) when the client goes away, so its watch is let go at once.
    """
    answered: set[tuple[int, int]] = set()  # (attempt, step) of the model responses sent: their live text is old
    with hub.watch(task_id, seq) as watch:
        while True:
            events = await store.list_events(task_id, tenant=tenant, after_seq=seq, limit=PAGE)
            for event in events:
                yield event
                seq = event.seq
                if event.type == EventType.MODEL_RESPONSE.value:
                    answered.add((event.attempt, int(event.payload.get("step", 0))))
                if ends(event):
                    return
            if len(events) == PAGE:
                continue
            while watch.live:
                text = watch.live.popleft()
                if (text.attempt, text.step) not in answered:
                    yield text
            if not events and watch.finished:
                return  # resumed past the terminal event of a finished task
            await watch.wait_past(seq)


def ends(event: TaskEvent) -> bool:
    """Whether ``event`` is the task's move into a terminal status: the last event a task stream sends."""
    if event.type != EventType.STATUS.value:
        return False
    to = event.payload.get("to")
    return isinstance(to, str) and to in {s.value for s in TaskStatus if s.is_terminal}
