"""Server-Sent Events: a task's events (``/v1/tasks/{id}/stream``) and a tenant's status changes
(``/v1/events/stream``).

A task's stream: each event's SSE ``id`` is its seq and its SSE ``event`` its
type; the data is the event as ``GET /v1/tasks/{id}/events`` gives it. A
client that reconnects with ``Last-Event-ID`` (or ``?after_seq=``) gets
exactly the events after it, from any API process. It ends after the task's
terminal status event.

A tenant's stream: every status change of the tenant's tasks (optionally of
one agent, or into one status), for dashboards; its SSE ``id`` is the event
row's id, to resume from. It never ends by itself.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from ops_core.api.auth import Reader
from ops_core.api.deps import SettingsDep, StoreDep, StreamsDep, bounded
from ops_core.api.errors import AUTH, INVALID, NOT_FOUND, UNAVAILABLE
from ops_core.api.schemas import StatusChangePublic, TaskEventPublic, to_json
from ops_core.api.storable import INT32_MAX, StorableText
from ops_core.config import Settings
from ops_core.db.models import TaskEvent
from ops_core.db.store import TaskStore
from ops_core.errors import InvalidRequest
from ops_core.lifecycle import TaskStatus
from ops_core.live import LiveText
from ops_core.streams import PAGE, StreamHub, follow_task
from ops_core.tenancy import TenantScope

router = APIRouter(tags=["streams"], responses=AUTH)

INT64_MAX = 2**63 - 1
LIVE_EVENT = "live_text"
SSE = {"text/event-stream": {"schema": {"type": "string"}}}


@router.get(
    "/v1/tasks/{task_id}/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": SSE, "description": "The task's events: every recorded one after the resume point, then live"},
        **NOT_FOUND,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def stream_task(
    task_id: UUID,
    caller: Reader,
    store: StoreDep,
    streams: StreamsDep,
    settings: SettingsDep,
    after_seq: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> EventSourceResponse:
    """Every event after the resume point in seq order, then the new ones as they are recorded, until the
    task's terminal status event. Reconnect with ``Last-Event-ID`` to get exactly the events missed."""
    start = _resume_point(after_seq, last_event_id) or 0
    async with bounded(settings):
        await store.get(task_id, tenant=caller.scope)
    streams.reserve()
    return _stream(_events(store, streams, task_id, caller.scope, start), settings)


@router.get(
    "/v1/events/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": SSE, "description": "The tenant's task status changes, live"},
        **INVALID,
        **UNAVAILABLE,
    },
)
async def stream_status_changes(
    caller: Reader,
    store: StoreDep,
    streams: StreamsDep,
    settings: SettingsDep,
    agent: Annotated[StorableText | None, Query(min_length=1, max_length=200)] = None,
    status: TaskStatus | None = None,
    after_id: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> EventSourceResponse:
    """Status changes of the tenant's tasks as they happen (from now, or after ``Last-Event-ID`` /
    ``after_id``); each event is ``status`` with the task, its agent, and the move."""
    start = _resume_point(after_id, last_event_id, INT64_MAX)
    if start is None:
        async with bounded(settings):
            start = await store.last_event_id()
    streams.reserve()
    return _stream(_changes(store, streams, caller.scope, start, agent, status), settings)


async def _changes(
    store: TaskStore,
    streams: StreamHub,
    tenant: TenantScope,
    after: int,
    agent: str | None,
    status: TaskStatus | None,
) -> AsyncIterator[ServerSentEvent]:
    with streams.watch(None, after) as watch:
        while True:
            horizon = watch.horizon
            changes = await store.status_changes(tenant=tenant, after_id=after, agent=agent, status=status, limit=PAGE)
            for change in changes:
                data = to_json(StatusChangePublic.model_validate(change)).decode()
                yield ServerSentEvent(data=data, event="status", id=str(change.id))
                after = change.id
            if len(changes) == PAGE:
                continue
            after = max(after, horizon)  # what the filter left out up to the last tick need not be read again
            await watch.wait_past(after)


def _stream(events: AsyncIterator[ServerSentEvent], settings: Settings) -> EventSourceResponse:
    return EventSourceResponse(
        events, ping=int(settings.stream_keepalive_seconds) or 1, send_timeout=settings.stream_send_timeout_seconds
    )


def _resume_point(after: int | None, last_event_id: str | None, largest: int = INT32_MAX) -> int | None:
    """A reconnecting client's ``Last-Event-ID`` wins over the query's resume point."""
    if last_event_id is None or not last_event_id.strip():
        return after
    if not last_event_id.strip().isdigit() or int(last_event_id) > largest:
        raise InvalidRequest(f"Last-Event-ID must be an event's seq, not {last_event_id[:20]!r}")
    return int(last_event_id)


async def _events(
    store: TaskStore, streams: StreamHub, task_id: UUID, tenant: TenantScope, seq: int
) -> AsyncIterator[ServerSentEvent]:
    async with contextlib.aclosing(follow_task(store, streams, task_id, tenant, seq)) as items:
        async for item in items:
            yield _live(item) if isinstance(item, LiveText) else _sent(item)


def _sent(event: TaskEvent) -> ServerSentEvent:
    data = to_json(TaskEventPublic.model_validate(event)).decode()
    return ServerSentEvent(data=data, event=event.type, id=str(event.seq))


def _live(text: LiveText) -> ServerSentEvent:
    """Live text has no id: it is not stored, so a reconnect does not resume from it."""
    data = json.dumps({"attempt": text.attempt, "step": text.step, "text": text.text})
    return ServerSentEvent(data=data, event=LIVE_EVENT)
