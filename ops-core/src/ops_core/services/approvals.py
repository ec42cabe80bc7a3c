"""Deciding the tool calls that wait for a person: checking the decision, recording it, resuming the task.

Edited arguments are checked here against the tool's own schema (422 when
they do not fit), so a run resumes only with arguments its tool accepts.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import ValidationError

from agentkit.registry import AgentRegistry
from agentkit.tools import validation_problems
from ops_core.db.approvals import ApprovalStore, Decided, Decision
from ops_core.db.store import TaskStore
from ops_core.domain import ApprovalStatus
from ops_core.errors import InvalidRequest
from ops_core.services.tasks import TaskService
from ops_core.tenancy import TenantScope


class ApprovalService:
    def __init__(self, approvals: ApprovalStore, store: TaskStore, tasks: TaskService, registry: AgentRegistry) -> None:
        self._approvals = approvals
        self._store = store
        self._tasks = tasks
        self._registry = registry

    async def decide(
        self,
        task_id: UUID,
        call_id: str,
        *,
        tenant: TenantScope,
        approve: bool,
        decided_by: str,
        reason: str | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> Decided:
        """Record the decision; when it was the last one the task waited for, publish the task again."""
        if arguments is not None:
            if not approve:
                raise InvalidRequest("arguments can only be given with approve: a denied call does not run")
            arguments = await self._checked(task_id, call_id, arguments, tenant=tenant)
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        decision = Decision(status=status, decided_by=decided_by, reason=reason, arguments=arguments)
        decided = await self._approvals.decide(task_id, call_id, decision, tenant=tenant)
        await self._tasks.publish(decided.task)
        return decided

    async def _checked(
        self, task_id: UUID, call_id: str, arguments: dict[str, Any], *, tenant: TenantScope
    ) -> dict[str, Any]:
        """``arguments`` validated (and coerced) by the schema of the tool the call names."""
        asked = await self._approvals.pending(task_id, call_id, tenant=tenant)
        task = await self._store.get(task_id, tenant=tenant)
        if task.agent not in self._registry:
            raise InvalidRequest(f"agent {task.agent!r} is not served here, so its tool's arguments cannot be checked")
        definition = self._registry.get(task.agent)
        tool = definition.toolset().get(asked.tool)
        if tool is None and definition.mcp_servers:
            # An MCP server's tool: its schema is the server's, which only a worker connects to. The
            # resumed run validates the edited arguments against it (a bad one is the model's tool error).
            return arguments
        if tool is None:
            raise InvalidRequest(f"agent {task.agent!r} has no tool {asked.tool!r} to check the arguments against")
        try:
            validated = tool.validate(arguments)
        except ValidationError as exc:
            raise InvalidRequest(f"arguments do not fit tool {tool.name!r}: {validation_problems(exc)}") from None
        checked: dict[str, Any] = validated.model_dump(mode="json")
        return checked
