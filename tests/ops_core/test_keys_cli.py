"""``opscore keys`` against a real (SQLite) database, and the client's key."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ops_core.cli import build_cli
from ops_core.config import load_settings
from ops_core.dev import dev_settings
from ops_core.keys import PREFIX, key_id_of


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("OPSCORE_"):
            monkeypatch.delenv(name)
    values = {"OPSCORE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"}
    assert CliRunner().invoke(build_cli(), ["db", "upgrade"], env=values).exit_code == 0
    return values


def test_create_prints_the_secret_alone_on_the_last_line_once(env: dict[str, str]) -> None:
    created = CliRunner().invoke(
        build_cli(),
        ["keys", "create", "--tenant", "team-a", "--scope", "tasks:read", "--name", "ci", "--expires-in", "30"],
        env=env,
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith(PREFIX) and created.stdout.strip() == secret
    key_id = key_id_of(secret)
    assert key_id is not None and key_id in created.stderr

    listed = CliRunner().invoke(build_cli(), ["keys", "list", "--tenant", "team-a"], env=env)
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.stdout and "tasks:read" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout and secret.rsplit("_", 1)[1] not in listed.stdout

    revoked = CliRunner().invoke(build_cli(), ["keys", "revoke", key_id], env=env)
    assert revoked.exit_code == 0 and f"revoked key {key_id}" in revoked.stdout
    assert "revoked" in CliRunner().invoke(build_cli(), ["keys", "list"], env=env).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--tenant", "Bad Name"], "--tenant"),
        (["keys", "create", "--tenant", "a", "--scope", "root"], "--scope"),
        (["keys", "create", "--tenant", "a", "--expires-in", "0"], "--expires-in"),
        (["keys", "revoke", "0123456789abcdef"], "not found"),
    ],
)
def test_bad_key_commands_fail_with_a_message(env: dict[str, str], args: list[str], message: str) -> None:
    result = CliRunner().invoke(build_cli(), args, env=env)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_client_commands_send_opscore_api_key(env: dict[str, str]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    cli = build_cli(transport=httpx.MockTransport(handler))
    result = CliRunner().invoke(cli, ["tasks"], env={**env, "OPSCORE_API_KEY": "opsk_secret"})
    assert result.exit_code == 0, result.output
    assert seen[0].headers["authorization"] == "Bearer opsk_secret"


@pytest.mark.parametrize(
    ("host", "explicit", "auth"),
    [
        ("127.0.0.1", None, "disabled"),
        ("::1", None, "disabled"),
        ("localhost", None, "disabled"),
        ("0.0.0.0", None, "required"),
        ("10.1.2.3", None, "required"),
        ("127.0.0.1", "required", "required"),
    ],
)
def test_dev_skips_keys_only_on_loopback_unless_told(host: str, explicit: str | None, auth: str) -> None:
    settings = load_settings(**({"auth": explicit} if explicit else {}))
    assert dev_settings(settings, host).auth == auth
