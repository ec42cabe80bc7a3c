"""Request and response bodies of ``/v1/agents`` and of the remote agents' signed callbacks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ops_core.api.access_schemas import Tenant
from ops_core.api.routes.streams import LIVE_EVENT
from ops_core.api.storable import MAX_JSON_DEPTH, StorableJsonObject, StorableText, json_problem
from ops_core.domain import EventType
from ops_core.signing import check_secret

AGENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
EVENT_TYPE = r"^[a-z][a-z0-9_]{0,49}$"
# The events ops-core writes itself (and the streams' unstored live text): a remote agent cannot forge a
# status change, a retry or a cancel.
RESERVED_EVENTS = frozenset({*(e.value for e in EventType), LIVE_EVENT}) - {
    EventType.MODEL_REQUEST,
    EventType.MODEL_RESPONSE,
    EventType.TOOL_CALL,
    EventType.TOOL_RESULT,
    EventType.POLICY_DECISION,
    EventType.FINAL_ANSWER,
}
MAX_EVENTS_PER_CALLBACK = 500


class ToolPublic(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="The tool's arguments as a JSON schema.")


class PolicyPublic(BaseModel):
    allow: list[str] | None = Field(description="Only these tools may be called; null: every tool not denied.")
    deny: list[str]
    require_approval: list[str] = Field(description="Calls of these tools wait for a person ('*': every tool).")
    constrained: list[str] = Field(description="Tools whose arguments the policy checks before a call.")
    approval_timeout: float | None


class McpServerPublic(BaseModel):
    name: str
    transport: Literal["stdio", "http"]
    prefix: str | None = Field(description="Its tools are named PREFIX_TOOL; null: by their own names.")


class AgentPublic(BaseModel):
    name: str
    kind: Literal["local", "remote"]
    description: str
    model: str | None = Field(description="The model a task runs on when it names none.")
    tools: list[ToolPublic] = Field(description="Local agents' tools; a remote agent's are its own business.")
    policy: PolicyPublic | None = Field(description="Local agents' tool policy; null for a remote agent.")
    mcp_servers: list[McpServerPublic] = Field(
        default_factory=list,
        description="MCP servers whose tools a local agent's runs also get; the tools are listed by the servers"
        " themselves when a worker connects, so they are not in `tools`.",
    )
    url: str | None = Field(default=None, description="A remote agent's endpoint.")


class AgentsPublic(BaseModel):
    items: list[AgentPublic]


class RemoteAgentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=AGENT_NAME, description="Unique among the tenant's agents, local ones included.")
    url: str = Field(min_length=1, max_length=2000, description="Where ops-core POSTs the signed task webhooks.")
    secret: str = Field(
        min_length=1,
        max_length=500,
        description="The Standard Webhooks shared secret, whsec_ + base64 of at least 24 random bytes."
        " Signs both directions; stored, never returned.",
    )
    description: StorableText = Field(default="", max_length=2000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    tenant: Tenant | None = Field(default=None, description="The tenant it serves; default: the admin key's own.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        problem = check_secret(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class RemoteAgentPublic(BaseModel):
    """A registered remote agent; its secret is never shown."""

    model_config = ConfigDict(from_attributes=True)

    tenant: str
    name: str
    url: str
    description: str
    model: str | None
    created_at: datetime


class RemoteAgentsPublic(BaseModel):
    items: list[RemoteAgentPublic]


# ---- the remote agent's callbacks --------------------------------------------------------------


class RemoteEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=EVENT_TYPE)
    payload: StorableJsonObject = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_EVENTS:
            raise ValueError(f"{value!r} is an event type ops-core writes itself")
        return value


class EventsCallback(BaseModel):
    """Events of the attempt, in order; an empty list only extends the lease (a heartbeat)."""

    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1)
    events: list[RemoteEvent] = Field(default_factory=list, max_length=MAX_EVENTS_PER_CALLBACK)


class RemoteUsage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int = Field(default=0, ge=0, le=2**40)
    output_tokens: int = Field(default=0, ge=0, le=2**40)


class RemoteError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(default="agent_error", pattern=EVENT_TYPE)
    message: StorableText = Field(min_length=1, max_length=10_000)
    retryable: bool = Field(default=False, description="True: the lifecycle may run the task again (backoff).")


class ResultCallback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1)
    status: Literal["completed", "failed", "cancelled"]
    result: Any = Field(default=None, description="The answer of a completed task (any JSON).")
    error: RemoteError | None = Field(default=None, description="Why it failed; required with status=failed.")
    usage: RemoteUsage = Field(default_factory=RemoteUsage, description="Tokens this attempt spent.")
    events: list[RemoteEvent] = Field(default_factory=list, max_length=MAX_EVENTS_PER_CALLBACK)

    @field_validator("result")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = json_problem(value, max_depth=MAX_JSON_DEPTH)
        if problem is not None:
            raise ValueError(problem)
        return value


class CallbackAccepted(BaseModel):
    task_status: str
