"""A :class:`~ops_core.api.schemas.TaskCreate` handed to the task service: the one mapping every
interface that takes a submit body uses (REST, gRPC, the MCP server), so none drops a field."""

from __future__ import annotations

from ops_core.api.schemas import TaskCreate
from ops_core.db.models import Task
from ops_core.services.tasks import TaskService


async def submit(tasks: TaskService, tenant: str, body: TaskCreate) -> tuple[Task, bool]:
    """Store and publish the task ``body`` asks for in ``tenant``; ``(task, created)``."""
    return await tasks.submit(
        tenant=tenant,
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
