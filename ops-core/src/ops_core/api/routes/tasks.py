"""``/v1/tasks``: submit, read, list, cancel, retry, and a task's event log."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from ops_core.api.auth import Reader, Writer
from ops_core.api.deps import MetricsDep, SettingsDep, StoreDep, TaskServiceDep, bounded
from ops_core.api.errors import AUTH, INVALID, NOT_FOUND, THROTTLED, TOO_LARGE, UNAVAILABLE, error_doc
from ops_core.api.schemas import (
    TaskCreate,
    TaskEventPublic,
    TaskEventsPublic,
    TaskPublic,
    TasksPublic,
    to_json,
)
from ops_core.api.storable import INT32_MAX, StorableText
from ops_core.db.models import Task
from ops_core.lifecycle import TaskStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=AUTH)


MAX_PAGE = 500
MAX_EVENTS = 1000


def _task_response(task: Task, status_code: int = status.HTTP_200_OK) -> Response:
    # Serialised here, once: returned as a model, FastAPI would validate it again against
    # response_model, dump it to a dict and json-encode that (~5x the cost, measured).
    return Response(content=to_json(TaskPublic.from_task(task)), status_code=status_code, media_type="application/json")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskPublic,
    responses={
        200: {"model": TaskPublic, "description": "The task submitted earlier with this idempotency_key"},
        404: error_doc("The session_id names no session of the tenant"),
        409: error_doc("The idempotency_key was used before with a different request, or the session is closed"),
        **TOO_LARGE,
        **INVALID,
        **THROTTLED,
        **UNAVAILABLE,
    },
)
async def submit_task(
    body: TaskCreate, caller: Writer, tasks: TaskServiceDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    """Queue a task in the caller's tenant; 202 when created, 200 with the existing task on a repeated
    idempotency_key."""
    async with bounded(settings):
        task, created = await tasks.submit(
            tenant=caller.tenant,
            goal=body.goal,
            # In a session an unnamed agent is the session's.
            agent=None if body.session_id is not None and "agent" not in body.model_fields_set else body.agent,
            input=body.input,
            model=body.model,
            idempotency_key=body.idempotency_key,
            max_retries=body.max_retries,
            timeout_seconds=body.timeout_seconds,
            priority=body.priority,
            schedule_to_start_seconds=body.schedule_to_start_seconds,
            concurrency_key=body.concurrency_key,
            concurrency_limit=body.concurrency_limit,
            session_id=body.session_id,
            callback_url=body.callback_url,
            run_after=body.not_before(),
        )
    if created:
        metrics.task_submitted(task.agent)
    return _task_response(task, status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


@router.get("", response_model=TasksPublic, responses={**INVALID, **UNAVAILABLE})
async def list_tasks(
    caller: Reader,
    store: StoreDep,
    settings: SettingsDep,
    status: TaskStatus | None = None,
    agent: Annotated[StorableText | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[StorableText | None, Query(min_length=1, max_length=500)] = None,
) -> Response:
    """The tenant's tasks (an admin's: every tenant's), newest first; follow ``next_cursor`` for older pages."""
    async with bounded(settings):
        page = await store.list(tenant=caller.scope, status=status, agent=agent, limit=limit, cursor=cursor)
    return Response(content=to_json(TasksPublic.from_page(page)), media_type="application/json")


@router.get("/{task_id}", response_model=TaskPublic, responses={**NOT_FOUND, **INVALID, **UNAVAILABLE})
async def get_task(task_id: UUID, caller: Reader, store: StoreDep, settings: SettingsDep) -> Response:
    """The task with everything: input, result and every attempt's error."""
    async with bounded(settings):
        task = await store.get(task_id, tenant=caller.scope)
    return _task_response(task)


@router.post(
    "/{task_id}/cancel",
    response_model=TaskPublic,
    responses={**NOT_FOUND, 409: error_doc("The task already finished"), **INVALID, **UNAVAILABLE},
)
async def cancel_task(task_id: UUID, caller: Writer, tasks: TaskServiceDep, settings: SettingsDep) -> Response:
    """Cancel: a pending task at once; a running one is flagged and its worker stops it."""
    async with bounded(settings):
        task = await tasks.cancel(task_id, tenant=caller.scope)
    return _task_response(task)


@router.post(
    "/{task_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskPublic,
    responses={
        **NOT_FOUND,
        409: error_doc(
            "Only failed or cancelled tasks can be retried, at most OPSCORE_MAX_MANUAL_RETRIES times;"
            " a session's turn only while it is the session's latest"
        ),
        **INVALID,
        **UNAVAILABLE,
    },
)
async def retry_task(task_id: UUID, caller: Writer, tasks: TaskServiceDep, settings: SettingsDep) -> Response:
    """Queue a failed or cancelled task again, with a fresh retry budget."""
    async with bounded(settings):
        task = await tasks.retry(task_id, tenant=caller.scope)
    return _task_response(task, status.HTTP_202_ACCEPTED)


@router.get("/{task_id}/events", response_model=TaskEventsPublic, responses={**NOT_FOUND, **INVALID, **UNAVAILABLE})
async def list_task_events(
    task_id: UUID,
    caller: Reader,
    store: StoreDep,
    settings: SettingsDep,
    after_seq: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = MAX_EVENTS,
) -> Response:
    """The task's events in ``seq`` order, starting after ``after_seq``."""
    async with bounded(settings):
        events = await store.list_events(task_id, tenant=caller.scope, after_seq=after_seq, limit=limit)
    body = TaskEventsPublic(items=[TaskEventPublic.model_validate(e) for e in events])
    return Response(content=to_json(body), media_type="application/json")
