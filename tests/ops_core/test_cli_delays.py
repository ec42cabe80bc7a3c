"""``opscore submit --delay / --at``: the delayed-task options reach the API as delay_seconds and run_at."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.support.cli import Cli, FakeClock, error, task


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPSCORE_"):
            monkeypatch.delenv(name)


def test_submit_sends_delay_seconds() -> None:
    cli = Cli(lambda request: httpx.Response(202, json=task()), FakeClock())

    result = cli("submit", "later", "--delay", "90", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(cli.requests[0].content) == {"goal": "later", "delay_seconds": 90.0}


def test_submit_sends_run_at() -> None:
    cli = Cli(lambda request: httpx.Response(202, json=task()), FakeClock())

    result = cli("submit", "later", "--at", "2030-01-01T09:00:00+01:00", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(cli.requests[0].content) == {"goal": "later", "run_at": "2030-01-01T09:00:00+01:00"}


def test_a_negative_delay_is_refused_before_any_request() -> None:
    cli = Cli(lambda request: httpx.Response(202, json=task()), FakeClock())

    result = cli("submit", "later", "--delay", "-1")

    assert result.exit_code == 2 and cli.requests == []


def test_the_servers_refusal_of_a_run_at_is_shown() -> None:
    cli = Cli(lambda request: error(422, "validation_error", "body.run_at: at most 366 days ahead"), FakeClock())

    result = cli("submit", "later", "--at", "2999-01-01T00:00:00+00:00")

    assert result.exit_code == 1 and "at most 366 days ahead" in result.stderr
