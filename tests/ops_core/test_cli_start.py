"""How ``opscore`` starts: what it imports, --version, and shell completion of the installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

from ops_core.cli import build_cli

OPSCORE = str(Path(sys.executable).with_name("opscore"))
SERVER_STACK = {"sqlalchemy", "sqlmodel", "fastapi", "starlette", "uvicorn", "dramatiq", "alembic", "agentkit"}

PROBE = """
import json, sys
{code}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def _loaded_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_server_stack() -> None:
    loaded = _loaded_after("import ops_core.cli")

    assert "typer" in loaded  # the probe does see what was imported
    assert loaded & SERVER_STACK == set()


def test_help_loads_neither_settings_nor_the_http_client_nor_rich() -> None:
    # --help and usage errors are the commonest runs of all: they must cost typer and nothing else.
    code = "from ops_core.cli import build_cli\ntry:\n    build_cli()(['--help'])\nexcept SystemExit:\n    pass"

    loaded = _loaded_after(code)

    assert loaded & (SERVER_STACK | {"pydantic", "pydantic_settings", "httpx", "rich"}) == set()


def test_version_comes_from_the_package_metadata() -> None:
    result = CliRunner().invoke(build_cli(), ["--version"])

    assert result.exit_code == 0
    assert result.stdout.strip() == f"opscore {version('ops-core')}"


def test_shell_completion_is_offered_and_completes_commands_and_choices() -> None:
    shown = subprocess.run([OPSCORE, "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "_OPSCORE_COMPLETE=complete_bash" in shown.stdout

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_OPSCORE_COMPLETE": "complete_bash", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
        done = subprocess.run([OPSCORE], capture_output=True, text=True, timeout=60, env=env)
        return done.stdout.split()

    assert complete("opscore wat") == ["watch"]
    assert complete("opscore work") == ["worker", "workers"]
    assert "waiting" in complete("opscore tasks --status ")
