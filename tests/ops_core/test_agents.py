"""OPSCORE_AGENTS as a newcomer uses it: a module in the project directory, and one clear line when it is wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops_core.agents import load_agents
from ops_core.cli import build_cli
from ops_core.config import load_settings
from ops_core.errors import ConfigError

MODULE = '''
from agentkit import AgentDefinition
from agentkit.tools import tool


@tool
def lookup_order(order_id: int) -> str:
    """Find an order."""
    return f"order {order_id}: shipped"


support = AgentDefinition(name="support", instructions="Answers order questions.", tools=[lookup_order])
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory holding agent modules, as the current directory (and sys.path as it was)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path


def test_a_module_in_the_current_directory_is_found(project: Path) -> None:
    (project / "newcomer_agents.py").write_text(MODULE)

    registry = load_agents(load_settings(agents="newcomer_agents"))

    assert "support" in registry and "default" in registry
    sys.modules.pop("newcomer_agents", None)


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        (None, "No module named 'missing_agents'"),
        ("raise RuntimeError('boom at import')", "RuntimeError: boom at import"),
        ("x = 1", "no `registry` and no AgentDefinition"),
        ("def broken(:\n", "SyntaxError"),
    ],
)
def test_a_module_that_cannot_load_is_one_clear_line(project: Path, source: str | None, cause: str) -> None:
    name = "missing_agents"
    if source is not None:
        name = f"bad_agents_{abs(hash(source))}"
        (project / f"{name}.py").write_text(source)

    with pytest.raises(ConfigError) as failed:
        load_agents(load_settings(agents=name))
    assert f"OPSCORE_AGENTS={name!r}" in failed.value.message and cause in failed.value.message

    result = CliRunner().invoke(build_cli(), ["dev"], env={"OPSCORE_AGENTS": name})
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: OPSCORE_AGENTS=") and cause in line
    assert "Traceback" not in result.output
