"""Named agent definitions, so a host can run an agent by name (e.g. from a task row)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from agentkit.agent import AgentDefinition
from agentkit.builtin_tools import builtin_toolset
from agentkit.errors import UnknownAgentError, UserError

__all__ = ["DEFAULT_AGENT", "AgentRegistry", "default_registry", "load_registry"]

DEFAULT_AGENT = AgentDefinition(
    name="default",
    instructions=(
        "You are a careful assistant. Use the tools when they help: the calculator for any "
        "arithmetic, current_time for the date or time. Answer concisely."
    ),
    tools=builtin_toolset(),
)


class AgentRegistry:
    def __init__(self, definitions: Iterable[AgentDefinition] = ()) -> None:
        self._definitions: dict[str, AgentDefinition] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: AgentDefinition, *, replace: bool = False) -> AgentDefinition:
        """Add ``definition``; a second agent with the same name is an error unless ``replace``."""
        if definition.name in self._definitions and not replace:
            raise UserError(f"an agent named {definition.name!r} is already registered")
        self._definitions[definition.name] = definition
        return definition

    def get(self, name: str) -> AgentDefinition:
        try:
            return self._definitions[name]
        except KeyError:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise UnknownAgentError(f"no agent named {name!r}; known agents: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[AgentDefinition]:
        return iter(self._definitions.values())

    def __len__(self) -> int:
        return len(self._definitions)


def default_registry() -> AgentRegistry:
    """A registry holding only the built-in ``default`` agent."""
    return AgentRegistry([DEFAULT_AGENT])


def load_registry(module_path: str) -> AgentRegistry:
    """Import ``module_path`` and collect its agents.

    The module's ``registry`` attribute (an :class:`AgentRegistry`) wins;
    otherwise every module-level :class:`AgentDefinition` is registered.
    The built-in ``default`` agent is added unless the module defines its own.
    """
    try:
        module = importlib.import_module(module_path)
    except Exception as exc:  # the module's own code may raise anything while it is imported
        raise UserError(f"cannot import agent module {module_path!r}: {type(exc).__name__}: {exc}") from exc
    found = getattr(module, "registry", None)
    if isinstance(found, AgentRegistry):
        registry = found
    else:
        definitions = [v for v in vars(module).values() if isinstance(v, AgentDefinition)]
        if not definitions:
            raise UserError(f"module {module_path!r} has no `registry` and no AgentDefinition")
        registry = AgentRegistry(definitions)
    if "default" not in registry:
        registry.register(DEFAULT_AGENT)
    return registry
