"""Loads the agent registry a process serves: agentkit's built-ins plus the user's module.

``OPSCORE_AGENTS`` names a module (``myagents``, ``mypkg.agents``) that holds
module-level ``AgentDefinition``s or an ``AgentRegistry`` named ``registry``.
It is imported from the current directory too, as ``uvicorn main:app`` does,
so ``OPSCORE_AGENTS=myagents opscore dev`` works from the project directory.
"""

from __future__ import annotations

import os
import sys

from agentkit.errors import UserError
from agentkit.registry import AgentRegistry, default_registry, load_registry
from ops_core.config import Settings
from ops_core.errors import ConfigError


def load_agents(settings: Settings) -> AgentRegistry:
    registry = default_registry()
    if settings.agents:
        here = os.getcwd()
        if here not in sys.path and "" not in sys.path:
            sys.path.insert(0, here)
        try:
            user = load_registry(settings.agents)
        except (ImportError, UserError) as exc:
            raise ConfigError(f"OPSCORE_AGENTS={settings.agents!r} cannot be loaded: {exc}") from exc
        for name in user.names():
            registry.register(user.get(name), replace=True)
    return registry
