"""Loads the agent registry a process serves: agentkit's built-ins plus the user's module."""

from __future__ import annotations

from agentkit.errors import UserError
from agentkit.registry import AgentRegistry, default_registry, load_registry
from ops_core.config import Settings
from ops_core.errors import ConfigError


def load_agents(settings: Settings) -> AgentRegistry:
    registry = default_registry()
    if settings.agents:
        try:
            user = load_registry(settings.agents)
        except (ImportError, UserError) as exc:
            raise ConfigError(f"OPSCORE_AGENTS: cannot load agents from {settings.agents!r}: {exc}") from exc
        for name in user.names():
            registry.register(user.get(name), replace=True)
    return registry
