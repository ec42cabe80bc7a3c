"""``/v1/agents``: the agents this deployment serves, remote agents' registrations (admin), and
``/v1/remote/tasks/{id}/…``: the signed callbacks through which remote agents report.

The callbacks carry no bearer key: their Standard Webhooks signature is their
authentication (``services/remote.py``), so ``AuthMiddleware`` lets
``/v1/remote/`` through to them.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ValidationError

from agentkit.agent import AgentDefinition
from ops_core.api.access_schemas import Tenant
from ops_core.api.agent_schemas import (
    AGENT_NAME,
    AgentPublic,
    AgentsPublic,
    CallbackAccepted,
    EventsCallback,
    McpServerPublic,
    PolicyPublic,
    RemoteAgentBody,
    RemoteAgentPublic,
    RemoteAgentsPublic,
    RemoteEvent,
    ResultCallback,
    ToolPublic,
)
from ops_core.api.auth import Admin, Reader
from ops_core.api.deps import SettingsDep, bounded, get_runtime
from ops_core.api.errors import AUTH, INVALID, TOO_LARGE, UNAVAILABLE, Responses, error_doc
from ops_core.db.models import NewEvent
from ops_core.db.remote import RemoteAgent
from ops_core.errors import InvalidRequest
from ops_core.runtime import Runtime
from ops_core.services.remote import Outcome, RemoteAgentService

router = APIRouter(tags=["agents"])

M = TypeVar("M", bound=BaseModel)

AgentName = Annotated[str, Path(pattern=AGENT_NAME)]
# Any text: an id that is not a task's is the same 401 as a bad signature, never a 422 that answers first.
CallbackTaskId = Annotated[str, Path(description="The task's id, as in the callback URL.")]
SIGNED: Responses = {
    401: error_doc("The signature is missing, invalid, too old or too new, or a replay; nothing changed")
}
SUPERSEDED: Responses = {
    409: error_doc("The attempt no longer owns the task (finished, cancelled, timed out or retried)")
}


async def get_remote_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> RemoteAgentService:
    return RemoteAgentService(runtime.store, runtime.remote_agents, runtime.registry, runtime.settings)


RemoteServiceDep = Annotated[RemoteAgentService, Depends(get_remote_service)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.get("/v1/agents", response_model=AgentsPublic, responses={**AUTH, **UNAVAILABLE})
async def list_agents(caller: Reader, runtime: RuntimeDep, service: RemoteServiceDep) -> AgentsPublic:
    """The agents a task of the caller's tenant may name: local ones (OPSCORE_AGENTS, with their tools'
    JSON schemas and policy), then the tenant's remote agents."""
    default_model = runtime.settings.default_model
    items = [_local(definition, default_model) for definition in sorted(runtime.registry, key=lambda d: d.name)]
    async with bounded(runtime.settings):
        remote = await service.list(caller.tenant)
    items += [_remote(agent, default_model) for agent in remote]
    return AgentsPublic(items=items)


def _local(definition: AgentDefinition, default_model: str) -> AgentPublic:
    policy = definition.policy
    return AgentPublic(
        name=definition.name,
        kind="local",
        description=(definition.instructions.strip().splitlines() or [""])[0],
        model=definition.model or default_model,
        tools=[
            ToolPublic(name=tool.name, description=tool.description, parameters=tool.parameters)
            for tool in definition.toolset().definitions()
        ],
        policy=PolicyPublic(
            allow=None if policy.allow is None else sorted(policy.allow),
            deny=sorted(policy.deny),
            require_approval=sorted(policy.require_approval),
            constrained=sorted(policy.constraints),
            approval_timeout=policy.approval_timeout,
        ),
        mcp_servers=[
            McpServerPublic(name=server.name, transport="stdio" if server.command else "http", prefix=server.prefix)
            for server in definition.mcp_servers
        ],
    )


def _remote(agent: RemoteAgent, default_model: str) -> AgentPublic:
    return AgentPublic(
        name=agent.name,
        kind="remote",
        description=agent.description,
        model=agent.model or default_model,
        tools=[],
        policy=None,
        url=agent.url,
    )


# ---- registrations (admin) -----------------------------------------------------------------------


@router.post(
    "/v1/agents/remote",
    status_code=status.HTTP_201_CREATED,
    response_model=RemoteAgentPublic,
    responses={
        **AUTH,
        409: error_doc("The name is taken by a local or a registered remote agent"),
        **INVALID,
        **TOO_LARGE,
        **UNAVAILABLE,
    },
)
async def register_remote_agent(
    body: RemoteAgentBody, caller: Admin, service: RemoteServiceDep, settings: SettingsDep
) -> RemoteAgentPublic:
    """Register an agent that runs behind ``url``: ops-core sends it each of its tasks as a signed
    webhook, and it reports back to the signed callback URLs. The secret is never returned."""
    async with bounded(settings):
        agent = await service.register(
            tenant=body.tenant or caller.tenant,
            name=body.name,
            url=body.url,
            secret=body.secret,
            description=body.description,
            model=body.model,
        )
    return RemoteAgentPublic.model_validate(agent)


@router.get("/v1/agents/remote", response_model=RemoteAgentsPublic, responses={**AUTH, **INVALID, **UNAVAILABLE})
async def list_remote_agents(
    caller: Admin, service: RemoteServiceDep, settings: SettingsDep, tenant: Annotated[Tenant | None, Query()] = None
) -> RemoteAgentsPublic:
    """A tenant's remote agents (default: the admin key's own tenant), without their secrets."""
    async with bounded(settings):
        agents = await service.list(tenant or caller.tenant)
    return RemoteAgentsPublic(items=[RemoteAgentPublic.model_validate(a) for a in agents])


@router.delete(
    "/v1/agents/remote/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**AUTH, 404: error_doc("No remote agent by that name in the tenant"), **INVALID, **UNAVAILABLE},
)
async def delete_remote_agent(
    name: AgentName,
    caller: Admin,
    service: RemoteServiceDep,
    settings: SettingsDep,
    tenant: Annotated[Tenant | None, Query()] = None,
) -> Response:
    """Unregister it. Its tasks still pending fail when claimed; running ones get no more callbacks."""
    async with bounded(settings):
        await service.delete(tenant or caller.tenant, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- the remote agent's signed callbacks -----------------------------------------------------------


@router.post(
    "/v1/remote/tasks/{task_id}/events",
    response_model=CallbackAccepted,
    responses={**SIGNED, **SUPERSEDED, **INVALID, **TOO_LARGE, **UNAVAILABLE},
)
async def remote_events(
    task_id: CallbackTaskId, request: Request, service: RemoteServiceDep, settings: SettingsDep
) -> CallbackAccepted:
    """Events of an attempt, signed with the agent's secret; an empty list is a heartbeat that extends the lease."""
    body = await request.body()
    async with bounded(settings):
        verified = await service.verify(task_id, body, request.headers)
        parsed = _parse(EventsCallback, body)
        task = await service.events(verified, parsed.attempt, _events(parsed.events))
    return CallbackAccepted(task_status=task.status.value)


@router.post(
    "/v1/remote/tasks/{task_id}/result",
    response_model=CallbackAccepted,
    responses={**SIGNED, **SUPERSEDED, **INVALID, **TOO_LARGE, **UNAVAILABLE},
)
async def remote_result(
    task_id: CallbackTaskId, request: Request, service: RemoteServiceDep, settings: SettingsDep
) -> CallbackAccepted:
    """How the attempt ended, with its last events and the tokens it spent, signed with the agent's secret."""
    body = await request.body()
    async with bounded(settings):
        verified = await service.verify(task_id, body, request.headers)
        parsed = _parse(ResultCallback, body)
        if parsed.status == "failed" and parsed.error is None:
            raise InvalidRequest("error: required when status is failed")
        error = parsed.error
        outcome = Outcome(
            status=parsed.status,
            result=parsed.result,
            error_type=error.type if error else "agent_error",
            error_message=error.message if error else "",
            retryable=error.retryable if error else False,
            input_tokens=parsed.usage.input_tokens,
            output_tokens=parsed.usage.output_tokens,
        )
        task = await service.finish(verified, parsed.attempt, outcome, _events(parsed.events))
    return CallbackAccepted(task_status=task.status.value)


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}") from None


def _events(events: list[RemoteEvent]) -> list[NewEvent]:
    return [NewEvent(event.type, event.payload) for event in events]
