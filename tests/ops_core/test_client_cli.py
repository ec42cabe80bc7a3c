"""The client commands people read: watch, submit --wait, the tables of tasks, status, workers and agents."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.support.cli import (
    TASK_ID,
    Cli,
    TaskScript,
    error,
    event,
    full_task,
    lines,
    run_events,
    status,
    task,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPSCORE_"):
            monkeypatch.delenv(name)


# --- watch ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["stream", "poll"])
def test_watch_shows_each_event_then_the_answer_and_exits_0(transport: str) -> None:
    events = run_events()
    # Three pages: the start, nothing new (the client waits), the rest up to the terminal status.
    script = TaskScript([events[:3], [], events[3:]], result="[offline model] 6 * 7 = 42")
    cli = Cli(script)

    result = cli("watch", TASK_ID, *(["--poll"] if transport == "poll" else []))

    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert out[0] == f"task {TASK_ID} · agent default · offline:default"
    assert out[1:9] == [
        "   1  status             → pending (created)",
        "   2  status             pending → running (claimed)",
        "   3  model_request      step 1 · offline:default · 2 messages",
        "   4  model_response     step 1 · offline:default · 1,200 in / 34 out tokens · calls calculator"
        " · finish tool_calls",
        '   5  tool_call          step 1 · calculator(expression="6 * 7")',
        "   6  tool_result        step 1 · calculator → 42",
        "   7  final_answer       step 2 · [offline model] 6 * 7 = 42",
        "   8  status             running → completed (finished)",
    ]
    assert out[9].startswith("completed · 1 attempt(s) · 1,234 tokens (in 1,200 / out 34)")
    assert "(ran 3.5s)" in out[9]
    assert out[10] == "[offline model] 6 * 7 = 42"
    # Each request resumes after the last event received: nothing twice, nothing missed.
    follows = [r for r in cli.requests if r.url.path.endswith(("/events", "/stream"))]
    assert len(follows) == 3
    if transport == "stream":
        assert [r.headers["last-event-id"] for r in follows] == ["0", "3", "3"]
        assert [r.headers["accept"] for r in follows] == ["text/event-stream"] * 3
    else:
        assert [r.url.params["after_seq"] for r in follows] == ["0", "3", "3"]


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_watch_exits_1_when_the_task_does_not_complete(final: str) -> None:
    failure = {"type": "tool_error", "message": "the tool broke"} if final == "failed" else None
    events = [*run_events(final)[:6], event(7, "error", step=1, type="tool_error", message="the tool broke")]
    script = TaskScript([[*events, status(8, "running", final, "finished")]], error=failure)

    result = Cli(script)("watch", TASK_ID)

    assert result.exit_code == 1
    out = lines(result.stdout)
    assert "   7  error              step 1 · tool_error: the tool broke" in out
    assert any(line.startswith(f"{final} · 1 attempt(s)") for line in out)
    if failure:
        assert out[-1] == "tool_error: the tool broke"


def test_watch_json_prints_one_event_per_line() -> None:
    events = run_events()
    result = Cli(TaskScript([events]))("watch", TASK_ID, "--json")

    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == events


def test_watch_shows_live_text_inline_until_the_stored_response() -> None:
    events = run_events()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            body = "".join(
                [
                    f"id: 3\nevent: model_request\ndata: {json.dumps(events[2])}\n\n",
                    'event: delta\ndata: {"text": "Let me "}\n\n',
                    'event: delta\ndata: {"text": "think."}\n\n',
                    *(f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events[3:]),
                ]
            )
            return httpx.Response(200, content=body.encode())
        return httpx.Response(200, json=full_task("completed"))

    result = Cli(handler)("watch", TASK_ID, "--after-seq", "2")

    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert out[2] == "Let me think."
    assert out[3].startswith("   4  model_response")


def test_watch_marks_a_new_attempt() -> None:
    events = [
        status(1, None, "pending", "created"),
        status(2, "pending", "running", "claimed"),
        event(3, "attempt_failed", attempt=1, type="model_error", message="502 from provider", retry_in_seconds=2),
        status(4, "running", "pending", "retry"),
        status(5, "pending", "running", "claimed", attempt=2),
        status(6, "running", "completed", "finished", attempt=2),
    ]
    result = Cli(TaskScript([events]))("watch", TASK_ID)

    out = lines(result.stdout)
    assert "   3  attempt_failed     model_error: 502 from provider · retry in 2s" in out
    assert out.index("── attempt 2 ──") == out.index("   5  status             pending → running (claimed)") - 1


def test_watch_an_unknown_task_exits_1_before_following() -> None:
    cli = Cli(lambda request: error(404, "task_not_found", f"task {TASK_ID} not found"))

    result = cli("watch", TASK_ID)

    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: task {TASK_ID} not found"
    assert cli.paths() == [f"GET /v1/tasks/{TASK_ID}"]


# --- submit --wait ---------------------------------------------------------


def test_submit_wait_shows_progress_on_stderr_and_the_task_on_stdout() -> None:
    events = run_events()
    cli = Cli(TaskScript([events[:2], events[2:]], result="42"))

    result = cli("submit", "What is 6 * 7?", "--wait", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"
    progress = lines(result.stderr)
    assert progress[0] == "   1  status             → pending (created)"
    assert '   5  tool_call          step 1 · calculator(expression="6 * 7")' in progress
    assert progress[-1] == "   8  status             running → completed (finished)"
    assert cli.paths()[0] == "POST /v1/tasks"
    assert cli.paths()[-1] == f"GET /v1/tasks/{TASK_ID}"


def test_submit_wait_prints_the_task_card_by_default() -> None:
    result = Cli(TaskScript([run_events()], result="42"))("submit", "What is 6 * 7?", "--wait")

    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert f"id        {TASK_ID}" in out
    assert "status    completed" in out
    assert out[-2:] == ["result", "42"]


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_submit_wait_exits_1_when_the_task_does_not_complete(final: str) -> None:
    failure = {"type": "tool_error", "message": "the tool broke"} if final == "failed" else None
    script = TaskScript([run_events(final)], error=failure)

    result = Cli(script)("submit", "say hi", "--wait", "--json")

    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == final
    assert f"error: task {TASK_ID} {final}" in result.stderr
    if failure:
        assert "tool_error: the tool broke" in result.stderr


@pytest.mark.parametrize("transport", ["stream", "poll"])
def test_submit_wait_timeout_gives_up_at_the_deadline(transport: str) -> None:
    script = TaskScript([run_events()[:2]])  # claimed, then nothing more, ever
    cli = Cli(script)

    result = cli("submit", "say hi", "--wait-timeout", "10", "--json", *(["--poll"] if transport == "poll" else []))

    assert result.exit_code == 1
    assert f"error: task {TASK_ID} is still running after waiting 10s" in result.stderr
    assert cli.clock.now == pytest.approx(10.0)
    assert json.loads(result.stdout)["status"] == "running"
    waits = cli.clock.sleeps[:-1]  # the last is cut short by the deadline
    assert waits == sorted(waits) and len(waits) < 15  # backs off, never speeds up


def test_submit_old_timeout_flag_still_bounds_the_wait() -> None:
    cli = Cli(TaskScript([run_events()[:2]]))

    result = cli("submit", "say hi", "--wait", "--timeout", "5", "--json", "--poll")

    assert result.exit_code == 1
    assert "--timeout is now --wait-timeout" in result.stderr
    assert cli.clock.now == pytest.approx(5.0)


def test_submit_without_wait_does_not_follow() -> None:
    cli = Cli(TaskScript([run_events()]))

    result = cli("submit", "say hi", "--timeout-seconds", "60", "--json")

    assert result.exit_code == 0
    assert cli.paths() == ["POST /v1/tasks"]
    assert json.loads(cli.requests[0].content) == {"goal": "say hi", "timeout_seconds": 60}


# --- tables ----------------------------------------------------------------


def test_tasks_prints_a_table_and_the_next_cursor_hint() -> None:
    rows = [full_task("completed"), full_task("running", goal="x" * 300)]
    cli = Cli(lambda request: httpx.Response(200, json={"items": rows, "next_cursor": "abc"}))

    result = cli("tasks")

    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert out[0].split() == ["ID", "STATUS", "AGENT", "MODEL", "TRIES", "TOKENS", "CREATED", "GOAL"]
    assert out[2].split() == [
        TASK_ID,
        "completed",
        "default",
        "offline:default",
        "1",
        "1,234",
        "2026-11-01",
        "12:00:00",
        "say",
        "hi",
    ]
    assert out[3].endswith("…")  # a long goal is cut, not wrapped
    assert len(out) == 4
    assert result.stderr.strip() == "more: opscore tasks --cursor abc"
    assert "\x1b[" not in result.stdout  # no colour off a terminal


def test_status_prints_the_task_card() -> None:
    failed = full_task(
        "failed",
        error={"type": "tool_error", "message": "the [bold]tool[/bold] broke"},
        attempts=2,
        attempt_errors=[{"attempt": 1, "type": "model_error", "message": "502", "at": "2026-11-01T12:00:02Z"}],
    )
    result = Cli(lambda request: httpx.Response(200, json=failed))("status", TASK_ID)

    assert result.exit_code == 0
    out = lines(result.stdout)
    assert out[:3] == [f"id        {TASK_ID}", "status    failed", "agent     default"]
    assert "attempts  2 (retries allowed: 3)" in out
    assert "tokens    1,234 tokens (in 1,200 / out 34)" in out
    assert "finished  2026-11-01 12:00:04 (ran 3.5s)" in out
    assert "error     tool_error: the [bold]tool[/bold] broke" in out  # what the API said, never markup
    assert out[-1] == "attempt 1: model_error: 502"


def test_events_prints_one_line_each_and_json_on_request() -> None:
    events = run_events()
    cli = Cli(lambda request: httpx.Response(200, json={"items": events}))

    readable = cli("events", TASK_ID)
    raw = cli("events", TASK_ID, "--json")

    assert lines(readable.stdout)[5] == "   6  tool_result        step 1 · calculator → 42"
    assert json.loads(raw.stdout) == {"items": events}


def test_workers_lists_live_workers() -> None:
    worker = {
        "id": "host-a:4242:1",
        "host": "host-a",
        "pid": 4242,
        "concurrency": 100,
        "started_at": "2026-11-01T11:00:00Z",
        "last_heartbeat": "2026-11-01T12:00:00Z",
        "current_task_ids": [TASK_ID],
    }
    cli = Cli(lambda request: httpx.Response(200, json={"items": [worker]}))

    table = cli("workers")
    raw = cli("workers", "--json")

    assert table.exit_code == 0, table.output
    out = lines(table.stdout)
    assert out[0].split() == ["ID", "HOST", "PID", "RUNS", "HEARTBEAT", "STARTED", "TASKS"]
    assert out[2].split()[:4] == ["host-a:4242:1", "host-a", "4242", "1/100"]
    assert out[2].endswith(TASK_ID)
    assert json.loads(raw.stdout) == {"items": [worker]}
    assert cli.paths() == ["GET /v1/workers"] * 2


def test_workers_without_an_admin_key_says_so() -> None:
    cli = Cli(lambda request: error(403, "forbidden", "this key lacks the admin scope"))

    result = cli("workers")

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: this key lacks the admin scope"


def test_agents_lists_what_the_api_serves_local_and_remote() -> None:
    served = [
        {
            "name": "default",
            "kind": "local",
            "description": "Answers.",
            "model": "offline:default",
            "tools": [{"name": "calculator", "description": "", "parameters": {"type": "object"}}],
            "policy": {"allow": None, "deny": [], "require_approval": [], "constrained": [], "approval_timeout": None},
            "url": None,
        },
        {
            "name": "remote-echo",
            "kind": "remote",
            "description": "Echoes.",
            "model": "offline:default",
            "tools": [],
            "policy": None,
            "url": "http://agent/hook",
        },
    ]
    cli = Cli(lambda request: httpx.Response(200, json={"items": served}))

    table = cli("agents")
    raw = cli("agents", "--json")

    assert table.exit_code == 0, table.output
    assert cli.paths() == ["GET /v1/agents"] * 2
    items = {item["name"]: item for item in json.loads(raw.stdout)["items"]}
    assert items["default"]["tools"] == ["calculator"] and items["remote-echo"]["kind"] == "remote"
    rows = {line.split()[0]: line for line in lines(table.stdout)[2:] if line}
    assert rows["default"].split() == ["default", "local", "offline:default", "calculator", "Answers."]
    assert rows["remote-echo"].split() == ["remote-echo", "remote", "offline:default", "Echoes."]


def test_agents_local_reads_the_registry_of_opscore_agents() -> None:
    cli = Cli(lambda request: error(500, "unexpected", "no request expected"))

    table = cli("agents", "--local", env={"OPSCORE_AGENTS": "tests.support.agents"})
    raw = cli("agents", "--local", "--json", env={"OPSCORE_AGENTS": "tests.support.agents"})

    assert table.exit_code == 0, table.output
    assert cli.requests == []
    items = {item["name"]: item for item in json.loads(raw.stdout)["items"]}
    assert {"default", "poison", "sleepy"} <= set(items)
    assert items["poison"] == {
        "name": "poison",
        "kind": "local",
        "description": "Calculates, fatally.",
        "model": "offline:default",
        "tools": ["calculator"],
        "mcp_servers": [],
    }
    assert items["default"]["tools"] == ["calculator", "current_time"]
    assert items["clock"]["tools"] == [] and items["clock"]["mcp_servers"] == ["time"]
    rows = {line.split()[0]: line for line in lines(table.stdout)[2:] if line}
    assert rows["poison"].split() == ["poison", "local", "offline:default", "calculator", "Calculates,", "fatally."]
    assert rows["clock"].split()[:4] == ["clock", "local", "offline:default", "mcp:time"]


def test_agents_local_with_a_bad_module_exits_2_naming_the_setting() -> None:
    result = Cli(lambda request: error(500, "unexpected", ""))(
        "agents", "--local", env={"OPSCORE_AGENTS": "no.such.module"}
    )

    assert result.exit_code == 2
    assert result.stderr.startswith("error: OPSCORE_AGENTS='no.such.module' cannot be loaded")


def test_cancel_and_retry_print_the_card_or_json() -> None:
    cli = Cli(lambda request: httpx.Response(200, json=task("cancelled")))

    assert "status    cancelled" in lines(cli("cancel", TASK_ID).stdout)
    assert json.loads(cli("retry", TASK_ID, "--json").stdout)["status"] == "cancelled"
