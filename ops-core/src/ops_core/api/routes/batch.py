"""``POST /v1/tasks/batch``: up to 1,000 tasks in one transaction, one outcome each."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ops_core.api.auth import Writer
from ops_core.api.batch_schemas import BatchItemPublic, TaskBatchCreate, TaskBatchPublic
from ops_core.api.deps import MetricsDep, SettingsDep, TaskServiceDep, bounded
from ops_core.api.errors import AUTH, INVALID, THROTTLED, TOO_LARGE, UNAVAILABLE
from ops_core.api.problems import describe_validation_errors
from ops_core.api.schemas import ErrorDetail, TaskCreate, TaskPublic, to_json
from ops_core.db.models import NewTask
from ops_core.errors import InvalidRequest, OpsCoreError, TooManyRequests, ValidationFailed
from ops_core.services.tasks import Submitted, TaskService

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=AUTH)


@router.post(
    "/batch",
    response_model=TaskBatchPublic,
    responses={**TOO_LARGE, **INVALID, **THROTTLED, **UNAVAILABLE},
)
async def submit_batch(
    body: TaskBatchCreate,
    caller: Writer,
    tasks: TaskServiceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    background: BackgroundTasks,
) -> Response:
    """Queue up to 1,000 tasks in the caller's tenant: 200 with one outcome per task, in order.

    Each task is ``created``, ``existing`` (its idempotency_key was used before for the same request)
    or ``rejected`` with the error ``POST /v1/tasks`` would have answered for it (an invalid field, an
    unknown agent, a reused key, the tenant's submission rate: a batch of N counts as N submissions).
    A rejected task does not stop the others. The new tasks are committed together before the answer;
    they are published right after it is sent (a task whose publish fails or never happens is published
    by the relay, as for a single submit whose broker is down).
    A 422 for the whole request means its shape is wrong (see TaskBatchCreate)."""
    async with bounded(settings):
        prepared = [await _prepare(index, item, caller.tenant, tasks) for index, item in enumerate(body.tasks)]
        outcomes = await tasks.submit_many(caller.tenant, prepared, publish=False)
    items = [_item(index, outcome) for index, outcome in enumerate(outcomes)]
    for item in items:
        if item.outcome == "created" and item.task is not None:
            metrics.task_submitted(item.task.agent)
    # 1,000 confirmed sends take longer than the insert: the client does not wait for them.
    created = [outcome[0] for outcome in outcomes if isinstance(outcome, tuple) and outcome[1]]
    background.add_task(tasks.publish_all, created)
    counts = {
        outcome: sum(item.outcome == outcome for item in items) for outcome in ("created", "existing", "rejected")
    }
    return Response(content=to_json(TaskBatchPublic(items=items, **counts)), media_type="application/json")


@router.api_route("/batch", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def batch_other_methods() -> Response:
    """405: without this route, GET /v1/tasks/batch would be read as a task id (and answered 422)."""
    raise HTTPException(status_code=405)


async def _prepare(index: int, item: dict[str, object], tenant: str, tasks: TaskService) -> NewTask | OpsCoreError:
    """The task one item asks for, checked as POST /v1/tasks checks it; or why it is refused."""
    try:
        create = TaskCreate.model_validate(item)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", "tasks", index, *error["loc"])} for error in exc.errors()]
        return ValidationFailed(describe_validation_errors(errors))
    if create.session_id is not None:
        # A turn joins its session in order, after the session's checks (TaskService.submit).
        return InvalidRequest(f"tasks.{index}.session_id: submit a session's turns one at a time with POST /v1/tasks")
    try:
        model = await tasks.resolve_model_for(tenant, create.agent, create.model)
        if create.callback_url is not None:
            await tasks.check_callback_url(create.callback_url)
        return tasks.new_task(
            tenant=tenant,
            agent=create.agent,
            goal=create.goal,
            input=create.input,
            model=model,
            idempotency_key=create.idempotency_key,
            max_retries=create.max_retries,
            timeout_seconds=create.timeout_seconds,
            priority=create.priority,
            schedule_to_start_seconds=create.schedule_to_start_seconds,
            concurrency_key=create.concurrency_key,
            concurrency_limit=create.concurrency_limit,
            callback_url=create.callback_url,
            run_after=create.not_before(),
        )
    except OpsCoreError as exc:
        return exc


def _item(index: int, outcome: Submitted) -> BatchItemPublic:
    if isinstance(outcome, OpsCoreError):
        retry_after = outcome.retry_after if isinstance(outcome, TooManyRequests) else None
        return BatchItemPublic(
            index=index,
            outcome="rejected",
            error=ErrorDetail(code=outcome.code, message=outcome.message),
            retry_after=retry_after,
        )
    assert outcome is not None
    task, created = outcome
    return BatchItemPublic(index=index, outcome="created" if created else "existing", task=TaskPublic.from_task(task))
