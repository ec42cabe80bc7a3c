"""ops-core as an MCP server: an MCP client (Claude Desktop, another agent) hands work to the orchestrator.

Tools: ``submit_task``, ``get_task``, ``list_tasks``, ``cancel_task``,
``wait_for_task`` and ``task_events``. Each does what its REST route does,
through the same service layer and store, with the same validation
(:class:`~ops_core.api.schemas.TaskCreate`), the same answers (the REST
schemas) and the same tenant scoping: a caller is a key of one tenant, or
an admin.

Served over Streamable HTTP at ``/mcp`` on the API (stateless and JSON, so any
API process answers any request; the key is checked by the API's auth
middleware, as for ``/v1``), and over stdio by ``opscore mcp``, which acts as
the key in ``OPSCORE_API_KEY``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field, ValidationError

from ops_core.api.schemas import TaskCreate, TaskEventPublic, TaskEventsPublic, TaskPublic, TasksPublic
from ops_core.errors import Forbidden, OpsCoreError
from ops_core.keys import Caller, Scope
from ops_core.lifecycle import TaskStatus
from ops_core.runtime import Runtime

__all__ = ["MAX_WAIT_SECONDS", "build_mcp_server"]

T = TypeVar("T")

MAX_WAIT_SECONDS = 600.0
MAX_PAGE = 500
MAX_EVENTS = 1000
WAIT_POLL_SECONDS = 0.25

CallerOf = Callable[[Context[Any, Any]], Awaitable[Caller]]
"""Who the request behind a tool call comes from (the HTTP request's key, or the stdio process's key)."""

INSTRUCTIONS = (
    "ops-core runs AI agent tasks durably. submit_task queues one and answers at once; follow it with "
    "wait_for_task (blocks until it ends or the wait times out), get_task, or task_events (its step-by-step log)."
)


def build_mcp_server(runtime: Callable[[], Runtime], caller_of: CallerOf) -> MCPServer:
    """The MCP server over ``runtime()``'s services; ``caller_of`` authenticates each call."""
    server = _without_logging_setup(lambda: MCPServer("ops-core", instructions=INSTRUCTIONS))

    async def allowed(ctx: Context[Any, Any], scope: Scope) -> Caller:
        caller = await caller_of(ctx)
        if not caller.allows(scope):
            raise ToolError(_message(Forbidden(f"this key lacks the {scope.value} scope")))
        return caller

    @server.tool()
    async def submit_task(
        goal: Annotated[str, Field(description="What the agent should do.")],
        ctx: Context[Any, Any],
        agent: Annotated[str, Field(description="The agent to run; see list_tasks for ones in use.")] = "default",
        input: Annotated[dict[str, Any] | None, Field(description="Structured input for the agent.")] = None,
        model: Annotated[str | None, Field(description="agentkit model string, e.g. 'openai:gpt-4o-mini'.")] = None,
        idempotency_key: Annotated[
            str | None, Field(description="Submitting again with this key returns the first task.")
        ] = None,
        max_retries: int | None = None,
        timeout_seconds: Annotated[int | None, Field(description="Wall-clock limit of one attempt.")] = None,
        priority: Annotated[int, Field(description="0-9; 9 runs first.")] = 0,
    ) -> dict[str, Any]:
        """Queue a task for an agent; answers at once with the task (status pending) and whether it is new."""
        caller = await allowed(ctx, Scope.TASKS_WRITE)
        fields = {
            "goal": goal,
            "agent": agent,
            "input": input,
            "model": model,
            "idempotency_key": idempotency_key,
            "max_retries": max_retries,
            "timeout_seconds": timeout_seconds,
            "priority": priority,
        }
        try:
            body = TaskCreate.model_validate({name: value for name, value in fields.items() if value is not None})
        except ValidationError as exc:
            raise ToolError(f"invalid_request: {_problems(exc)}") from None
        task, created = await _service(
            runtime().tasks.submit(
                tenant=caller.tenant,
                goal=body.goal,
                agent=body.agent,
                input=body.input,
                model=body.model,
                idempotency_key=body.idempotency_key,
                max_retries=body.max_retries,
                timeout_seconds=body.timeout_seconds,
                priority=body.priority,
            )
        )
        return {"created": created, "task": _dump(TaskPublic.from_task(task))}

    @server.tool()
    async def get_task(task_id: str, ctx: Context[Any, Any]) -> dict[str, Any]:
        """A task with its status, input, result, usage and errors."""
        caller = await allowed(ctx, Scope.TASKS_READ)
        task = await _service(runtime().store.get(_uuid(task_id), tenant=caller.scope))
        return _dump(TaskPublic.from_task(task))

    @server.tool()
    async def list_tasks(
        ctx: Context[Any, Any],
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page.")] = None,
    ) -> dict[str, Any]:
        """Your tenant's tasks, newest first; pass next_cursor back as cursor for older ones."""
        caller = await allowed(ctx, Scope.TASKS_READ)
        page = await _service(
            runtime().store.list(tenant=caller.scope, status=status, agent=agent, limit=limit, cursor=cursor)
        )
        return _dump(TasksPublic.from_page(page))

    @server.tool()
    async def cancel_task(task_id: str, ctx: Context[Any, Any]) -> dict[str, Any]:
        """Cancel a task: a pending one at once, a running one as soon as its worker sees the request."""
        caller = await allowed(ctx, Scope.TASKS_WRITE)
        task = await _service(runtime().tasks.cancel(_uuid(task_id), tenant=caller.scope))
        return _dump(TaskPublic.from_task(task))

    @server.tool()
    async def wait_for_task(
        task_id: str,
        ctx: Context[Any, Any],
        timeout_seconds: Annotated[float, Field(gt=0, le=MAX_WAIT_SECONDS)] = 60.0,
    ) -> dict[str, Any]:
        """Wait until the task completes, fails or is cancelled, at most timeout_seconds.

        Answers ``finished`` (false when the wait timed out first) and the task.
        """
        caller = await allowed(ctx, Scope.TASKS_READ)
        store = runtime().store
        ident = _uuid(task_id)
        deadline = time.monotonic() + timeout_seconds
        while True:
            task = await _service(store.get(ident, tenant=caller.scope))
            if task.status.is_terminal or time.monotonic() >= deadline:
                return {"finished": task.status.is_terminal, "task": _dump(TaskPublic.from_task(task))}
            await asyncio.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    @server.tool()
    async def task_events(
        task_id: str,
        ctx: Context[Any, Any],
        after_seq: Annotated[int, Field(ge=0)] = 0,
        limit: Annotated[int, Field(ge=1, le=MAX_EVENTS)] = 100,
    ) -> dict[str, Any]:
        """The task's events in order (model calls, tool calls and results, status changes), after after_seq."""
        caller = await allowed(ctx, Scope.TASKS_READ)
        events = await _service(
            runtime().store.list_events(_uuid(task_id), tenant=caller.scope, after_seq=after_seq, limit=limit)
        )
        return _dump(TaskEventsPublic(items=[TaskEventPublic.model_validate(e) for e in events]))

    return server


def _without_logging_setup(build: Callable[[], MCPServer]) -> MCPServer:
    """``MCPServer()`` calls ``logging.basicConfig`` with a rich handler: keep the process's own log setup.

    ``basicConfig`` does nothing while the root logger has a handler, so one is there for the call.
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        return build()
    finally:
        root.removeHandler(guard)


async def _service(call: Awaitable[T]) -> T:
    """Await a service call; its domain error becomes the tool's error, worded as REST words it."""
    try:
        return await call
    except OpsCoreError as exc:
        raise ToolError(_message(exc)) from None


def _message(exc: OpsCoreError) -> str:
    return f"{exc.code}: {exc.message}"


def _uuid(task_id: str) -> UUID:
    try:
        return UUID(task_id)
    except ValueError:
        raise ToolError(f"invalid_request: task_id {task_id[:100]!r} is not a UUID") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors())


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json")
    return dumped
