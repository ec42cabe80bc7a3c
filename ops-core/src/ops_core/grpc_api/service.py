"""The TaskService's RPCs: the REST task routes' work, on the same task service, store and stream hub.

Each call is authenticated from its ``authorization`` metadata by the API's
own :class:`~ops_core.api.auth.Authenticator` (the same keys, key cache,
scopes and tenant scoping as REST), bounded by ``OPSCORE_REQUEST_DEADLINE_SECONDS``
like a REST request, and every ops-core error ends it with the status
:mod:`ops_core.grpc_api.errors` gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from ops_core.api.auth import ANONYMOUS, Authenticator, authenticate, check_scope
from ops_core.api.deps import bounded
from ops_core.api.metrics import ApiMetrics
from ops_core.api.schemas import TaskCreate
from ops_core.config import Settings
from ops_core.db.store import TaskStore
from ops_core.errors import InvalidFields, OpsCoreError
from ops_core.grpc_api import convert
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.grpc_api.errors import abort, abort_unexpected
from ops_core.keys import Caller, Scope
from ops_core.services.tasks import TaskService
from ops_core.streams import StreamHub, follow_task

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TaskService"].full_name

Context = grpc.aio.ServicerContext[object, object]


@dataclass(frozen=True)
class Backend:
    """What the API process serves with: the REST app's own objects, shared, not copies."""

    settings: Settings
    tasks: TaskService
    store: TaskStore
    authenticator: Authenticator
    streams: StreamHub
    metrics: ApiMetrics


@dataclass(frozen=True)
class Undecodable:
    """What the server's deserializer hands over for bytes that are not a message of the method's type."""

    type_name: str
    reason: str


class TaskServicer:
    """``opscore.v1.TaskService``'s methods; :mod:`ops_core.grpc_api.server` registers them."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._settings = backend.settings

    async def Submit(self, request: pb.SubmitTaskRequest, context: Context) -> pb.SubmitTaskResponse:
        async with self._call(context, Scope.TASKS_WRITE) as caller:
            body = convert.validated(TaskCreate, convert.submit_fields(request))
            task, created = await self._backend.tasks.submit(
                tenant=caller.tenant,
                goal=body.goal,
                agent=body.agent,
                input=body.input,
                model=body.model,
                idempotency_key=body.idempotency_key,
                max_retries=body.max_retries,
                timeout_seconds=body.timeout_seconds,
                priority=body.priority,
                schedule_to_start_seconds=body.schedule_to_start_seconds,
                concurrency_key=body.concurrency_key,
                concurrency_limit=body.concurrency_limit,
                callback_url=body.callback_url,
                run_after=body.not_before(),
            )
            if created:
                self._backend.metrics.task_submitted(task.agent)
            return pb.SubmitTaskResponse(task=convert.task_message(task), created=created)

    async def Get(self, request: pb.GetTaskRequest, context: Context) -> pb.Task:
        async with self._call(context, Scope.TASKS_READ) as caller:
            task = await self._backend.store.get(convert.task_id(request.task_id), tenant=caller.scope)
            return convert.task_message(task)

    async def List(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksResponse:
        async with self._call(context, Scope.TASKS_READ) as caller:
            query = convert.validated(convert.ListQuery, convert.list_fields(request))
            page = await self._backend.store.list(
                tenant=caller.scope, status=query.status, agent=query.agent, limit=query.limit, cursor=query.cursor
            )
            return pb.ListTasksResponse(
                items=[convert.summary_message(task) for task in page.items], next_cursor=page.next_cursor or ""
            )

    async def Cancel(self, request: pb.CancelTaskRequest, context: Context) -> pb.Task:
        async with self._call(context, Scope.TASKS_WRITE) as caller:
            task = await self._backend.tasks.cancel(convert.task_id(request.task_id), tenant=caller.scope)
            return convert.task_message(task)

    async def Retry(self, request: pb.RetryTaskRequest, context: Context) -> pb.Task:
        async with self._call(context, Scope.TASKS_WRITE) as caller:
            task = await self._backend.tasks.retry(convert.task_id(request.task_id), tenant=caller.scope)
            return convert.task_message(task)

    async def ListEvents(self, request: pb.ListTaskEventsRequest, context: Context) -> pb.ListTaskEventsResponse:
        async with self._call(context, Scope.TASKS_READ) as caller:
            fields: dict[str, object] = {"task_id": request.task_id, "after_seq": request.after_seq}
            if request.HasField("limit"):
                fields["limit"] = request.limit
            query = convert.validated(convert.EventsQuery, fields)
            events = await self._backend.store.list_events(
                query.task_id, tenant=caller.scope, after_seq=query.after_seq, limit=query.limit
            )
            return pb.ListTaskEventsResponse(items=[convert.event_message(event) for event in events])

    async def WatchTask(self, request: pb.WatchTaskRequest, context: Context) -> AsyncIterator[pb.WatchTaskResponse]:
        async with self._call(context, Scope.TASKS_READ, deadline=False) as caller:
            query = convert.validated(convert.EventsQuery, {"task_id": request.task_id, "after_seq": request.after_seq})
            async with bounded(self._settings):
                await self._backend.store.get(query.task_id, tenant=caller.scope)
            backend = self._backend
            items = follow_task(backend.store, backend.streams, query.task_id, caller.scope, query.after_seq)
            async with contextlib.aclosing(items):
                async for item in items:
                    yield convert.watch_message(item)

    async def refuse(self, context: Context, undecodable: Undecodable) -> None:
        """A request that is not a message of its type: refused once its key is checked, like a REST body
        (a caller without a key learns nothing about what it sent)."""
        async with self._call(context, None):
            raise InvalidFields(f"request: not a valid {undecodable.type_name} message ({undecodable.reason})")

    @contextlib.asynccontextmanager
    async def _call(self, context: Context, scope: Scope | None, *, deadline: bool = True) -> AsyncIterator[Caller]:
        """The authenticated caller, if its key has ``scope``; every error of the call becomes its status."""
        try:
            caller = await self._caller(context)
            if scope is not None:
                check_scope(caller, scope)
            if deadline:
                async with bounded(self._settings):
                    yield caller
            else:
                yield caller
        except grpc.aio.AbortError:
            raise
        except OpsCoreError as exc:
            await abort(context, exc)
        except Exception as exc:
            await abort_unexpected(context, exc)

    async def _caller(self, context: Context) -> Caller:
        if not self._settings.auth_required:
            return ANONYMOUS
        return await authenticate(self._backend.authenticator, _authorization(context))


def _authorization(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode("latin-1")
    return ""
