from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkit.agent import Agent, AgentDefinition
from agentkit.errors import UnknownAgentError, UserError
from agentkit.outcome import RunSuccess
from agentkit.registry import AgentRegistry, default_registry, load_registry
from agentkit.testing import OfflineModel


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("agents_fixture_")]:
            del sys.modules[name]


def test_register_get_names_contains() -> None:
    registry = AgentRegistry([AgentDefinition(name="b"), AgentDefinition(name="a")])
    assert registry.names() == ["a", "b"] and "a" in registry and "z" not in registry and len(registry) == 2
    assert registry.get("a").name == "a"
    with pytest.raises(UnknownAgentError, match="no agent named 'z'; known agents: a, b"):
        registry.get("z")
    with pytest.raises(UserError, match="already registered"):
        registry.register(AgentDefinition(name="a"))
    registry.register(AgentDefinition(name="a", instructions="new"), replace=True)
    assert registry.get("a").instructions == "new"


async def test_default_agent_has_builtin_tools_and_runs_offline() -> None:
    definition = default_registry().get("default")
    assert definition.toolset().names() == ["calculator", "current_time"]
    outcome = await Agent(definition, OfflineModel()).run("What is 6 * 7?")
    assert isinstance(outcome, RunSuccess) and "calculator result: 42" in outcome.text


def test_load_registry_collects_definitions(module_dir: Path) -> None:
    (module_dir / "agents_fixture_defs.py").write_text(
        "from agentkit import AgentDefinition\n"
        "researcher = AgentDefinition(name='researcher', instructions='Research.')\n"
        "writer = AgentDefinition(name='writer')\n"
        "not_an_agent = 3\n"
    )
    registry = load_registry("agents_fixture_defs")
    assert registry.names() == ["default", "researcher", "writer"]
    assert registry.get("researcher").instructions == "Research."


def test_load_registry_prefers_registry_attribute(module_dir: Path) -> None:
    (module_dir / "agents_fixture_reg.py").write_text(
        "from agentkit import AgentDefinition, AgentRegistry\n"
        "ignored = AgentDefinition(name='ignored')\n"
        "registry = AgentRegistry([AgentDefinition(name='default', instructions='mine')])\n"
    )
    registry = load_registry("agents_fixture_reg")
    assert registry.names() == ["default"] and registry.get("default").instructions == "mine"


def test_load_registry_errors(module_dir: Path) -> None:
    (module_dir / "agents_fixture_empty.py").write_text("x = 1\n")
    with pytest.raises(UserError, match="no `registry` and no AgentDefinition"):
        load_registry("agents_fixture_empty")
    with pytest.raises(UserError, match="cannot import"):
        load_registry("agents_fixture_missing")


def test_a_module_that_raises_while_imported_is_a_user_error(module_dir: Path) -> None:
    (module_dir / "agents_fixture_raises.py").write_text("raise KeyError('MY_API_KEY')\n")
    with pytest.raises(UserError, match=r"cannot import agent module 'agents_fixture_raises': KeyError: 'MY_API_KEY'"):
        load_registry("agents_fixture_raises")
