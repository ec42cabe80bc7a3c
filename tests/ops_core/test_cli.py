"""The ``opscore`` CLI: client commands against a scripted HTTP transport, exit codes, settings errors, migrations."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ops_core.cli import build_cli
from tests.support.cli import TASK_ID, Cli, FakeClock, Handler, error, task


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPSCORE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_cli() -> Iterator[Callable[[Handler], Cli]]:
    yield lambda handler: Cli(handler, FakeClock())


def test_submit_posts_the_task_and_prints_it(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(202, json=task()))

    result = cli(
        "submit",
        "say hi",
        "--agent",
        "helper",
        "--model",
        "offline:x",
        "--input",
        '{"a": 1}',
        "--idempotency-key",
        "k1",
        "--priority",
        "5",
        "--max-retries",
        "2",
        "--timeout-seconds",
        "90",
        "--schedule-to-start-seconds",
        "30",
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == task()
    (request,) = cli.requests
    assert (request.method, request.url.path) == ("POST", "/v1/tasks")
    assert str(request.url).startswith("http://127.0.0.1:8000/")
    assert json.loads(request.content) == {
        "goal": "say hi",
        "agent": "helper",
        "model": "offline:x",
        "input": {"a": 1},
        "idempotency_key": "k1",
        "priority": 5,
        "max_retries": 2,
        "timeout_seconds": 90,
        "schedule_to_start_seconds": 30,
    }


def test_submit_sends_only_the_goal_by_default(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(202, json=task()))

    assert cli("submit", "say hi").exit_code == 0
    assert json.loads(cli.requests[0].content) == {"goal": "say hi"}


@pytest.mark.parametrize(("raw", "why"), [("{nope", "not valid JSON"), ("[1, 2]", "must be a JSON object")])
def test_submit_rejects_bad_input_json_as_usage_error(make_cli: Callable[[Handler], Cli], raw: str, why: str) -> None:
    cli = make_cli(lambda request: httpx.Response(202, json=task()))

    result = cli("submit", "x", "--input", raw)

    assert result.exit_code == 2
    assert why in result.stderr
    assert cli.requests == []


def test_status_prints_the_task(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json=task("running")))

    result = cli("status", TASK_ID, "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "running"
    assert cli.requests[0].url.path == f"/v1/tasks/{TASK_ID}"


def test_api_error_prints_the_server_message_and_exits_1(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: error(404, "task_not_found", f"task {TASK_ID} not found"))

    result = cli("status", TASK_ID)

    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: task {TASK_ID} not found"
    assert result.stdout == ""


def test_an_id_is_sent_as_one_path_segment(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: error(422, "validation_error", "path field 'task_id': bad"))

    result = cli("status", "../workers")

    assert result.exit_code == 1
    assert cli.requests[0].url.raw_path == b"/v1/tasks/..%2Fworkers"


def test_a_non_api_error_response_is_described(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))

    result = cli("status", TASK_ID)

    assert result.exit_code == 1
    assert "502 Bad Gateway" in result.stderr


def test_tasks_passes_filters(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json={"items": [task("failed")], "next_cursor": None}))

    result = cli("tasks", "--status", "failed", "--agent", "helper", "--limit", "5", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["items"][0]["status"] == "failed"
    assert dict(cli.requests[0].url.params) == {"status": "failed", "agent": "helper", "limit": "5"}


def test_tasks_rejects_an_unknown_status_without_calling_the_api(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json={"items": [], "next_cursor": None}))

    result = cli("tasks", "--status", "sleeping")

    assert result.exit_code == 2
    assert cli.requests == []


@pytest.mark.parametrize(
    ("command", "method", "path"),
    [
        ("cancel", "POST", f"/v1/tasks/{TASK_ID}/cancel"),
        ("retry", "POST", f"/v1/tasks/{TASK_ID}/retry"),
        ("events", "GET", f"/v1/tasks/{TASK_ID}/events"),
    ],
)
def test_task_actions_call_their_endpoint(
    make_cli: Callable[[Handler], Cli], command: str, method: str, path: str
) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json={"items": []} if command == "events" else task()))

    result = cli(command, TASK_ID)

    assert result.exit_code == 0, result.output
    assert (cli.requests[0].method, cli.requests[0].url.path) == (method, path)


def test_cancel_conflict_exits_1_with_the_message(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: error(409, "task_finished", f"task {TASK_ID} is already completed"))

    result = cli("cancel", TASK_ID)

    assert result.exit_code == 1
    assert "is already completed" in result.stderr


def test_api_url_option_and_setting(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json=task()))

    cli("status", TASK_ID, env={"OPSCORE_API_URL": "http://from-env:9000"})
    cli("status", TASK_ID, "--api-url", "http://from-flag:7000/", env={"OPSCORE_API_URL": "http://from-env:9000"})

    assert [r.url.host for r in cli.requests] == ["from-env", "from-flag"]
    assert cli.requests[1].url.port == 7000


def test_connection_refused_is_a_clear_message() -> None:
    # A real socket: nothing listens on port 1 of the loopback interface.
    result = CliRunner().invoke(build_cli(), ["status", TASK_ID, "--api-url", "http://127.0.0.1:1"])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot connect to the ops-core API at http://127.0.0.1:1")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("env", "args", "setting"),
    [
        ({"OPSCORE_PORT": "eighty"}, ["api"], "OPSCORE_PORT"),
        ({"OPSCORE_DATABASE_URL": "mysql://x"}, ["worker"], "OPSCORE_DATABASE_URL"),
        ({"OPSCORE_BROKER_URL": "redis://x"}, ["dev"], "OPSCORE_BROKER_URL"),
        ({"OPSCORE_DEFAULT_MODEL": "nosuch:model"}, ["db", "upgrade"], "OPSCORE_DEFAULT_MODEL"),
        ({"OPSCORE_LOG_LEVEL": "LOUD"}, ["status", TASK_ID], "OPSCORE_LOG_LEVEL"),
    ],
)
def test_invalid_settings_exit_2_naming_the_setting(env: dict[str, str], args: list[str], setting: str) -> None:
    result = CliRunner().invoke(build_cli(), args, env=env)

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: invalid settings: ")
    assert setting in lines[0]
    assert "Traceback" not in result.output


def test_server_options_are_validated() -> None:
    result = CliRunner().invoke(build_cli(), ["api", "--port", "0"])

    assert result.exit_code == 2


def test_db_upgrade_and_downgrade_migrate_the_database(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    env = {"OPSCORE_DATABASE_URL": f"sqlite+aiosqlite:///{path}"}

    def tables() -> set[str]:
        with sqlite3.connect(path) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    up = CliRunner().invoke(build_cli(), ["db", "upgrade"], env=env)
    assert up.exit_code == 0, up.output
    assert "database upgraded to head" in up.stdout
    assert {"tasks", "task_events", "workers"} <= tables()

    down = CliRunner().invoke(build_cli(), ["db", "downgrade", "base"], env=env)
    assert down.exit_code == 0, down.output
    assert "tasks" not in tables()


def test_no_arguments_shows_help() -> None:
    result = CliRunner().invoke(build_cli(), [])

    assert "submit" in result.output
    assert "worker" in result.output


@pytest.mark.parametrize(
    ("env", "args", "threads"),
    [
        ({}, [], 32),
        ({"OPSCORE_WORKER_THREADS": "7"}, [], 7),
        ({"OPSCORE_WORKER_THREADS": "7"}, ["--threads", "5"], 5),
    ],
)
def test_worker_threads_come_from_the_option_then_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], threads: int
) -> None:
    import ops_core.worker.pool

    started: list[tuple[int, int]] = []
    monkeypatch.setattr(
        ops_core.worker.pool,
        "run_pool",
        lambda settings, processes, threads, concurrency: started.append((processes, threads)),
    )
    result = CliRunner().invoke(build_cli(), ["worker", "--processes", "2", *args], env=env)

    assert result.exit_code == 0, result.output
    assert started == [(2, threads)]


def test_approvals_lists_the_pending_ones_by_default(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json={"items": []}))

    assert cli("approvals").exit_code == 0
    assert cli("approvals", "--status", "approved", "--task", TASK_ID, "--limit", "5").exit_code == 0

    first, second = cli.requests
    assert (first.method, first.url.path) == ("GET", "/v1/approvals")
    assert dict(first.url.params) == {"status": "pending", "limit": "100"}
    assert dict(second.url.params) == {"status": "approved", "task_id": TASK_ID, "limit": "5"}


def test_approve_and_deny_post_the_decision(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json={"approval": {}, "task_status": "pending"}))

    approved = cli("approve", TASK_ID, "call_1", "--reason", "ok", "--arguments", '{"to": "b@example.com"}')
    denied = cli("deny", TASK_ID, "call/2")

    assert approved.exit_code == 0 and denied.exit_code == 0, approved.output + denied.output
    approve_request, deny_request = cli.requests
    assert approve_request.url.path == f"/v1/tasks/{TASK_ID}/approvals/call_1"
    assert json.loads(approve_request.content) == {
        "decision": "approve",
        "reason": "ok",
        "arguments": {"to": "b@example.com"},
    }
    assert deny_request.url.raw_path.decode().endswith("/approvals/call%2F2")
    assert json.loads(deny_request.content) == {"decision": "deny"}


def test_approve_refuses_arguments_that_are_not_a_json_object(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(200, json={}))

    result = cli("approve", TASK_ID, "c1", "--arguments", "[1]")

    assert result.exit_code == 2 and "must be a JSON object" in result.stderr
    assert cli.requests == []


def test_a_decision_the_server_refuses_exits_1(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: error(409, "not_waiting", "tool call 'c1' was already decided: approved"))

    result = cli("deny", TASK_ID, "c1")

    assert result.exit_code == 1 and "already decided" in result.stderr


def test_submit_sends_the_concurrency_key_and_limit(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(202, json=task()))

    result = cli("submit", "say hi", "--concurrency-key", "customer:42", "--concurrency-limit", "3", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(cli.requests[0].content) == {
        "goal": "say hi",
        "concurrency_key": "customer:42",
        "concurrency_limit": 3,
    }


def test_submit_sends_the_session(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(202, json=task()))

    result = cli("submit", "and now?", "--session", "6a6c8fd6-25f4-4a6f-a405-533fda651ffa", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(cli.requests[0].content) == {
        "goal": "and now?",
        "session_id": "6a6c8fd6-25f4-4a6f-a405-533fda651ffa",
    }


def test_submit_sends_the_callback_url(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(202, json=task()))

    result = cli("submit", "say hi", "--callback-url", "https://hooks.example.com/in", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(cli.requests[0].content) == {"goal": "say hi", "callback_url": "https://hooks.example.com/in"}


def test_submit_refuses_a_concurrency_limit_out_of_range(make_cli: Callable[[Handler], Cli]) -> None:
    cli = make_cli(lambda request: httpx.Response(202, json=task()))

    result = cli("submit", "say hi", "--concurrency-key", "a", "--concurrency-limit", "0")

    assert result.exit_code == 2
    assert cli.requests == []
