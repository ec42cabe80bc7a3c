"""Agent definitions and the entry point that runs them.

The step-by-step loop lives in :mod:`agentkit.run`; this module is the
public face: what an agent is (:class:`AgentDefinition`, :class:`Limits`)
and how to run one (:class:`Agent`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agentkit.errors import UserError
from agentkit.hooks import RunHooks
from agentkit.mcp import McpServer, McpSessions
from agentkit.memory import ConversationWindow, LongTermMemory
from agentkit.messages import AssistantMessage, Message, UserMessage
from agentkit.models.base import Model, ModelSettings
from agentkit.outcome import Checkpoint, RunOutcome
from agentkit.policy import Policy
from agentkit.tools import DEFAULT_TOOL_TIMEOUT, Tool, ToolLike, Toolset

__all__ = ["Agent", "AgentDefinition", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Bounds on one run; exceeding one ends the run with the matching ``RunError``.

    * ``max_steps``: model calls (a step is one model call plus its tool calls).
    * ``max_total_tokens``: checked before each model call, resumed usage included.
    * ``max_output_retries``: re-asks after a final answer failed ``output_type`` validation.
    * ``tool_timeout``: seconds for a tool without its own ``timeout``.
    * ``max_denied_calls``: policy denials the model is told about before ``PolicyDenied``.
    * ``max_tool_errors``: failed tool calls (bad arguments, ``ToolRetry``, timeouts,
      exceptions) the model is told about before ``ToolFailed``.
    """

    max_steps: int = 10
    max_total_tokens: int | None = None
    max_output_retries: int = 2
    tool_timeout: float = DEFAULT_TOOL_TIMEOUT
    max_denied_calls: int = 3
    max_tool_errors: int = 5

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.tool_timeout <= 0:
            raise ValueError("tool_timeout must be positive")
        if self.max_total_tokens is not None and self.max_total_tokens <= 0:
            raise ValueError("max_total_tokens must be positive")


@dataclass(frozen=True)
class AgentDefinition:
    """Everything that makes an agent, as data (a registry maps names to these).

    ``model`` is a ``provider:model`` string, or ``None`` to let the host (or
    the environment, via :func:`agentkit.models.infer_model`) choose.
    ``tools`` may be a :class:`Toolset` or a list of tools, functions and toolsets.
    ``mcp_servers``: MCP servers whose tools the agent has besides ``tools``
    (see :mod:`agentkit.mcp`); they are listed when a run starts.
    """

    name: str
    instructions: str = ""
    model: str | None = None
    tools: Toolset | Sequence[Toolset | ToolLike] = ()
    policy: Policy = field(default_factory=Policy)
    limits: Limits = field(default_factory=Limits)
    output_type: type[BaseModel] | None = None
    memory: ConversationWindow | None = None
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    memory_limit: int = 5
    """How many long-term memories are retrieved for the goal."""
    mcp_servers: Sequence[McpServer] = ()

    def toolset(self) -> Toolset:
        return self.tools if isinstance(self.tools, Toolset) else Toolset(*self.tools)


def resolve_model(model: Model | str | None) -> Model:
    if isinstance(model, Model):
        return model
    # Imported here, not at module level: the provider package pulls in HTTP
    # clients and reads configuration, which ``import agentkit`` must not do.
    from agentkit.models import infer_model

    return infer_model(model)


class Agent:
    """Runs an :class:`AgentDefinition` with a model.

    ``model`` overrides the definition's model string; either may be a
    ``provider:model`` string (e.g. ``"offline:default"``, ``"openai:gpt-4o-mini"``).
    ``mcp``: the sessions that reach the definition's MCP servers, shared with
    other agents and runs; without it each run opens its own and closes them
    at its end.
    """

    def __init__(
        self, definition: AgentDefinition, model: Model | str | None = None, *, mcp: McpSessions | None = None
    ) -> None:
        self.definition = definition
        self.toolset: Toolset = definition.toolset()
        self.model: Model = resolve_model(model if model is not None else definition.model)
        self.mcp = mcp

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def tools(self) -> list[Tool]:
        return list(self.toolset)

    async def run(
        self,
        goal: str,
        *,
        input: dict[str, Any] | None = None,
        deps: Any = None,
        hooks: RunHooks | None = None,
        resume: Checkpoint | None = None,
        long_term_memory: LongTermMemory | None = None,
        run_id: str | None = None,
        mcp: McpSessions | None = None,
        history: Sequence[Message] = (),
    ) -> RunOutcome:
        """Run to a final answer or a typed failure; never raises a ``RunError``.

        ``history`` is earlier conversation (user and assistant messages, oldest
        first), sent between the instructions and ``goal``; with a memory window
        (``AgentDefinition.memory``) its oldest turns are dropped first.

        With ``resume``, the checkpoint's finished steps are reused as they
        are (the model is not asked again, their tools do not run again) and
        ``goal``/``input``/``long_term_memory``/``history`` are not consulted:
        they are already part of the checkpoint's messages. ``mcp`` overrides
        the agent's sessions for this run.
        """
        from agentkit.run import AgentRun

        for message in history:
            if not isinstance(message, UserMessage | AssistantMessage):
                raise UserError(f"history holds user and assistant messages only, not {message.role!r} messages")
        rid = run_id or (resume.run_id if resume is not None else uuid.uuid4().hex)
        servers = self.definition.mcp_servers
        if servers and mcp is None and self.mcp is None:
            async with McpSessions() as own:
                return await self.run(
                    goal,
                    input=input,
                    deps=deps,
                    hooks=hooks,
                    resume=resume,
                    long_term_memory=long_term_memory,
                    run_id=rid,
                    mcp=own,
                    history=history,
                )
        return await AgentRun(
            agent=self,
            goal=goal,
            input=input,
            deps=deps,
            hooks=hooks or RunHooks(),
            long_term_memory=long_term_memory,
            run_id=rid,
            tools=self._tools_for_run(servers, mcp or self.mcp) if servers else None,
            history=history,
        ).execute(resume)

    async def _tools_for_run(self, servers: Sequence[McpServer], mcp: McpSessions | None) -> Toolset:
        assert mcp is not None  # run() opened sessions of its own when it was given none
        return Toolset(self.toolset, await mcp.toolset(servers))

    def run_sync(
        self,
        goal: str,
        *,
        input: dict[str, Any] | None = None,
        deps: Any = None,
        hooks: RunHooks | None = None,
        resume: Checkpoint | None = None,
        long_term_memory: LongTermMemory | None = None,
        run_id: str | None = None,
        history: Sequence[Message] = (),
    ) -> RunOutcome:
        """:meth:`run` for code without an event loop (fails inside a running loop)."""
        return asyncio.run(
            self.run(
                goal,
                input=input,
                deps=deps,
                hooks=hooks,
                resume=resume,
                long_term_memory=long_term_memory,
                run_id=run_id,
                history=history,
            )
        )
