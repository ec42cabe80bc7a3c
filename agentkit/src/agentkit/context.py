"""The run context a tool can ask for as its first parameter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from agentkit.messages import Usage

DepsT = TypeVar("DepsT")


@dataclass(frozen=True)
class RunContext(Generic[DepsT]):
    """What a tool knows about the run calling it.

    ``deps`` is whatever the host passed to ``Agent.run(deps=...)`` (a database
    handle, an HTTP client, a tenant id...); agentkit never looks inside it.
    ``usage`` is the run's token usage so far (resumed usage included) and
    ``step`` the 1-based number of the step whose tool calls are running.
    """

    deps: DepsT
    run_id: str
    step: int
    usage: Usage
    agent_name: str = ""
