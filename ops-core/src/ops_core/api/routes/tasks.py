"""``/v1/tasks``: submit, read, list, cancel, retry, and a task's event log."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from ops_core.api.deps import MetricsDep, SettingsDep, StoreDep, TaskServiceDep, bounded
from ops_core.api.schemas import TaskCreate, TaskEventPublic, TaskEventsPublic, TaskPublic, TasksPublic
from ops_core.lifecycle import TaskStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No task with that id"},
    422: {"description": "Invalid id, body or query"},
    503: {"description": "The database or broker is unavailable"},
}

MAX_PAGE = 500
MAX_EVENTS = 1000


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskPublic,
    responses={
        200: {"model": TaskPublic, "description": "The task submitted earlier with this idempotency_key"},
        422: ERRORS[422],
        503: ERRORS[503],
    },
)
async def submit_task(body: TaskCreate, tasks: TaskServiceDep, settings: SettingsDep, metrics: MetricsDep) -> Response:
    """Queue a task; 202 when created, 200 with the existing task on a repeated idempotency_key."""
    async with bounded(settings):
        task, created = await tasks.submit(
            goal=body.goal,
            agent=body.agent,
            input=body.input,
            model=body.model,
            idempotency_key=body.idempotency_key,
            max_retries=body.max_retries,
            timeout_seconds=body.timeout_seconds,
            priority=body.priority,
            schedule_to_start_seconds=body.schedule_to_start_seconds,
        )
    if created:
        metrics.task_submitted(task.agent)
    # Serialised here, once: returned as a model, FastAPI would validate it again against
    # response_model, dump it to a dict and json-encode that (~5x the cost, measured).
    return Response(
        content=TaskPublic.from_task(task).model_dump_json(),
        status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        media_type="application/json",
    )


@router.get("", responses={422: ERRORS[422], 503: ERRORS[503]})
async def list_tasks(
    store: StoreDep,
    settings: SettingsDep,
    status: TaskStatus | None = None,
    agent: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
) -> TasksPublic:
    """Tasks newest first; follow ``next_cursor`` for older pages."""
    async with bounded(settings):
        page = await store.list(status=status, agent=agent, limit=limit, cursor=cursor)
    return TasksPublic(items=[TaskPublic.from_task(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{task_id}", responses=ERRORS)
async def get_task(task_id: UUID, store: StoreDep, settings: SettingsDep) -> TaskPublic:
    async with bounded(settings):
        task = await store.get(task_id)
    return TaskPublic.from_task(task)


@router.post("/{task_id}/cancel", responses={**ERRORS, 409: {"description": "The task already finished"}})
async def cancel_task(task_id: UUID, tasks: TaskServiceDep, settings: SettingsDep) -> TaskPublic:
    """Cancel: a pending task at once; a running one is flagged and its worker stops it."""
    async with bounded(settings):
        task = await tasks.cancel(task_id)
    return TaskPublic.from_task(task)


@router.post(
    "/{task_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**ERRORS, 409: {"description": "Only failed or cancelled tasks can be retried"}},
)
async def retry_task(task_id: UUID, tasks: TaskServiceDep, settings: SettingsDep) -> TaskPublic:
    """Queue a failed or cancelled task again, with a fresh retry budget."""
    async with bounded(settings):
        task = await tasks.retry(task_id)
    return TaskPublic.from_task(task)


@router.get("/{task_id}/events", responses=ERRORS)
async def list_task_events(
    task_id: UUID,
    store: StoreDep,
    settings: SettingsDep,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = MAX_EVENTS,
) -> TaskEventsPublic:
    """The task's events in ``seq`` order, starting after ``after_seq``."""
    async with bounded(settings):
        events = await store.list_events(task_id, after_seq=after_seq, limit=limit)
    return TaskEventsPublic(items=[TaskEventPublic.model_validate(e) for e in events])
