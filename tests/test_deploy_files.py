"""docker-compose.yml and the Dockerfile describe a stack whose every command is a real entry point.

There is no Docker engine here, so what can be checked without one is checked:
the compose file parses, has the services the README promises, the worker can
be scaled, and each service's command is accepted by the ``opscore`` CLI.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ops_core.cli import build_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def test_compose_has_the_production_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "rabbitmq", "migrate", "api", "worker"}


def test_worker_can_be_scaled(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    # A fixed container name or host port would make `--scale worker=4` fail.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_migrate_runs_once_before_api_and_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_services_point_at_the_compose_databases(compose: dict[str, Any]) -> None:
    for name in ("migrate", "api", "worker"):
        env = compose["services"][name]["environment"]
        assert (
            env["OPSCORE_DATABASE_URL"].startswith("postgresql+asyncpg://")
            and "@postgres:" in env["OPSCORE_DATABASE_URL"]
        )
        assert env["OPSCORE_BROKER_URL"].startswith("amqp://") and "@rabbitmq:" in env["OPSCORE_BROKER_URL"]


def _opscore_commands(compose: dict[str, Any]) -> list[list[str]]:
    commands = [service["command"] for service in compose["services"].values() if "command" in service]
    return [c for c in commands if c[0] == "opscore"]


def test_every_opscore_command_is_a_real_entry_point(compose: dict[str, Any]) -> None:
    commands = _opscore_commands(compose)
    dockerfile_cmd = next(line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    commands.append(yaml.safe_load(dockerfile_cmd.removeprefix("CMD")))
    assert len(commands) == 4
    runner = CliRunner()
    for command in commands:
        # --help after the full argument list: parses every option, runs nothing.
        result = runner.invoke(build_cli(), [*command[1:], "--help"])
        assert result.exit_code == 0, f"{shlex.join(command)}: {result.output}"


def test_dockerfile_copies_paths_that_exist() -> None:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (REPO / source).exists(), source
