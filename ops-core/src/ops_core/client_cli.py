"""The ``opscore`` client commands: submit, watch and inspect tasks through the REST API.

People get tables and event lines (:mod:`ops_core.terminal`); scripts pass
``--json`` and get the API's JSON. Settings, the HTTP client and rich are
imported inside the commands (see :mod:`ops_core.cli`): registering these
commands costs typer and the standard library only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ops_core.domain import ApprovalStatus
from ops_core.errors import ConfigError
from ops_core.lifecycle import TaskStatus

if TYPE_CHECKING:
    import httpx

    from ops_core.api.client import ApiClient
    from ops_core.config import Settings

JsonObject = dict[str, Any]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_WAIT_SECONDS = 600.0

ApiUrl = Annotated[
    str | None, typer.Option("--api-url", help="Base URL of the ops-core API (default: OPSCORE_API_URL).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table (for scripts).")]
Poll = Annotated[
    bool, typer.Option("--poll", help="Poll GET /v1/tasks/ID/events instead of reading the live event stream (SSE).")
]
TaskId = Annotated[str, typer.Argument(help="Task id.")]


def add_client_commands(
    cli: typer.Typer,
    *,
    settings: Callable[..., Settings],
    transport: httpx.BaseTransport | None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    @contextmanager
    def client(api_url: str | None) -> Iterator[ApiClient]:
        loaded = settings(**({"api_url": api_url} if api_url else {}))
        from ops_core.api.client import ApiClient, ApiError

        key = loaded.api_key.get_secret_value() if loaded.api_key else None
        try:
            with ApiClient(loaded.api_url, api_key=key, transport=transport) as api:
                yield api
        except ApiError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(EXIT_FAILED) from None

    def follow(
        api: ApiClient, task_id: str, *, after_seq: int, poll: bool, deadline: float | None
    ) -> Iterator[JsonObject]:
        source = api.poll_events if poll else api.stream_events
        return source(task_id, after_seq=after_seq, deadline=deadline, sleep=sleep, clock=clock)

    @cli.command()
    def submit(
        goal: Annotated[str, typer.Argument(help="What the agent should do.")],
        agent: Annotated[str | None, typer.Option(help="Registered agent name (server default: 'default').")] = None,
        model: Annotated[str | None, typer.Option(help="agentkit model string, e.g. 'openai:gpt-4o-mini'.")] = None,
        input_json: Annotated[
            str | None, typer.Option("--input", help="A JSON object handed to the agent as its input.")
        ] = None,
        idempotency_key: Annotated[
            str | None, typer.Option(help="Submitting the same key again returns the first task.")
        ] = None,
        priority: Annotated[int | None, typer.Option(min=0, max=9, help="0 (default, lowest) to 9.")] = None,
        max_retries: Annotated[
            int | None, typer.Option(min=0, max=100, help="Retries after a retryable failure (server default: 3).")
        ] = None,
        timeout_seconds: Annotated[
            int | None, typer.Option(min=1, help="The task's own time limit per attempt (server default: 3600).")
        ] = None,
        schedule_to_start_seconds: Annotated[
            int | None, typer.Option(min=1, help="Fail the task if no worker starts it within this many seconds.")
        ] = None,
        concurrency_key: Annotated[
            str | None,
            typer.Option(help="At most --concurrency-limit of the tenant's tasks with this key run at once."),
        ] = None,
        concurrency_limit: Annotated[
            int | None, typer.Option(min=1, max=10_000, help="Tasks with --concurrency-key run at once (default 1).")
        ] = None,
        session: Annotated[
            str | None,
            typer.Option(help="A session's id: the task is its next turn, and sees the earlier ones."),
        ] = None,
        callback_url: Annotated[
            str | None, typer.Option(help="POST the task's final record here, signed, when it ends (a webhook).")
        ] = None,
        delay: Annotated[
            float | None, typer.Option(min=0, help="Start no earlier than this many seconds from now.")
        ] = None,
        at: Annotated[
            str | None,
            typer.Option(help="Start no earlier than this ISO 8601 time with a UTC offset (2030-01-01T09:00+01:00)."),
        ] = None,
        wait: Annotated[
            bool,
            typer.Option(
                "--wait", help="Follow the task's events (on stderr) until it ends; exit 1 unless it completed."
            ),
        ] = False,
        wait_timeout: Annotated[
            float | None,
            typer.Option(
                min=0.001,
                help="How long --wait waits for the task to end, in seconds"
                f" (implies --wait; default {DEFAULT_WAIT_SECONDS:g}).",
            ),
        ] = None,
        old_timeout: Annotated[float | None, typer.Option("--timeout", min=0.001, hidden=True)] = None,
        poll: Poll = False,
        as_json: AsJson = False,
        api_url: ApiUrl = None,
    ) -> None:
        """Submit a task and print it.

        With --wait, its events go to stderr as they happen, and the task is printed once it has ended."""
        if old_timeout is not None:
            typer.echo("warning: --timeout is now --wait-timeout (the task's own limit is --timeout-seconds)", err=True)
            wait_timeout = old_timeout if wait_timeout is None else wait_timeout
        waiting = wait or wait_timeout is not None
        body: JsonObject = {"goal": goal}
        body.update(
            given(
                agent=agent,
                model=model,
                input=_parse_json_object(input_json, "--input"),
                idempotency_key=idempotency_key,
                priority=priority,
                max_retries=max_retries,
                timeout_seconds=timeout_seconds,
                schedule_to_start_seconds=schedule_to_start_seconds,
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
                session_id=session,
                callback_url=callback_url,
                delay_seconds=delay,
                run_at=at,
            )
        )
        limit = DEFAULT_WAIT_SECONDS if wait_timeout is None else wait_timeout
        with client(api_url) as api:
            task = api.submit(body)
            if waiting:
                from ops_core.terminal import EventPrinter, make_console

                printer = EventPrinter(make_console(stderr=True))
                for event in follow(api, str(task["id"]), after_seq=0, poll=poll, deadline=clock() + limit):
                    printer.show(event)
                task = api.get_task(str(task["id"]))
        _show_task(task, as_json)
        if waiting:
            _exit_for(task, waited=limit)

    @cli.command()
    def watch(
        task_id: TaskId,
        after_seq: Annotated[int, typer.Option(min=0, help="Start after this event sequence number.")] = 0,
        poll: Poll = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print each event as one line of JSON, nothing else (for scripts).")
        ] = False,
        api_url: ApiUrl = None,
    ) -> None:
        """Follow a task live until it ends.

        Status changes, model calls and their tokens, tool calls and results, live text, and the final
        answer. Exits 0 if the task completed, 1 if it failed or was cancelled."""
        from ops_core.terminal import EventPrinter, make_console

        printer = EventPrinter(make_console())
        try:
            with client(api_url) as api:
                task = api.get_task(task_id)  # an unknown id fails here, before any stream is opened
                if not as_json:
                    printer.console.print(f"task {task['id']} · agent {task['agent']} · {task['model']}", style="bold")
                for event in follow(api, task_id, after_seq=after_seq, poll=poll, deadline=None):
                    if as_json:
                        typer.echo(json.dumps(event, ensure_ascii=False))
                    else:
                        printer.show(event)
                task = api.get_task(task_id)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if not as_json:
            printer.finish(task)
        _exit_for(task, waited=None, quiet=not as_json)

    @cli.command()
    def status(task_id: TaskId, as_json: AsJson = False, api_url: ApiUrl = None) -> None:
        """Show one task: status, tokens, times, result or error."""
        with client(api_url) as api:
            task = api.get_task(task_id)
        _show_task(task, as_json)

    @cli.command()
    def tasks(
        status: Annotated[TaskStatus | None, typer.Option(help="Only tasks in this status.")] = None,
        agent: Annotated[str | None, typer.Option(help="Only tasks of this agent.")] = None,
        limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
        cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
        as_json: AsJson = False,
        api_url: ApiUrl = None,
    ) -> None:
        """List tasks, newest first.

        --json prints the API's {items, next_cursor}."""
        with client(api_url) as api:
            page = api.list_tasks(status=status, agent=agent, limit=limit, cursor=cursor)
        if as_json:
            _emit(page)
            return
        from ops_core.terminal import make_console, tasks_table

        make_console().print(tasks_table(page["items"]))
        if page.get("next_cursor"):
            typer.echo(f"more: opscore tasks --cursor {page['next_cursor']}", err=True)

    @cli.command()
    def cancel(task_id: TaskId, as_json: AsJson = False, api_url: ApiUrl = None) -> None:
        """Cancel a task (a running task stops at its next step)."""
        with client(api_url) as api:
            _show_task(api.cancel(task_id), as_json)

    @cli.command()
    def retry(task_id: TaskId, as_json: AsJson = False, api_url: ApiUrl = None) -> None:
        """Queue a failed or cancelled task again."""
        with client(api_url) as api:
            _show_task(api.retry(task_id), as_json)

    @cli.command()
    def events(
        task_id: TaskId,
        after_seq: Annotated[int, typer.Option(min=0, help="Only events after this sequence number.")] = 0,
        as_json: AsJson = False,
        api_url: ApiUrl = None,
    ) -> None:
        """Print a task's recorded events, one line each.

        --json prints the API's {items}."""
        with client(api_url) as api:
            page = api.events(task_id, after_seq=after_seq)
        if as_json:
            _emit(page)
            return
        from ops_core.terminal import EventPrinter, make_console

        printer = EventPrinter(make_console())
        for event in page["items"]:
            printer.show(event)

    @cli.command()
    def workers(as_json: AsJson = False, api_url: ApiUrl = None) -> None:
        """List live workers (needs an admin key).

        Each process with its host, pid, runs held, last heartbeat, and the tasks it runs."""
        with client(api_url) as api:
            found = api.workers()
        if as_json:
            _emit(found)
            return
        from ops_core.terminal import make_console, workers_table

        make_console().print(workers_table(found["items"]))

    @cli.command()
    def agents(
        as_json: AsJson = False,
        api_url: ApiUrl = None,
        local: Annotated[
            bool, typer.Option("--local", help="Read OPSCORE_AGENTS on this machine instead of asking the API.")
        ] = False,
    ) -> None:
        """List the agents the deployment serves (GET /v1/agents): local ones and the tenant's remote agents.

        With --local, the agents OPSCORE_AGENTS defines, read on this machine as the API and the workers
        read them, with no API call: the built-in default agent plus those of the module."""
        if local:
            items = _local_agents()
        else:
            with client(api_url) as api:
                found = api.agents()["items"]
            items = [{**item, "tools": [tool["name"] for tool in item.get("tools") or []]} for item in found]
        if as_json:
            _emit({"items": items})
            return
        from ops_core.terminal import agents_table, make_console

        make_console().print(agents_table(items))

    def _local_agents() -> list[JsonObject]:
        loaded = settings()
        from ops_core.agents import load_agents

        try:
            registry = load_agents(loaded)
        except ConfigError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        return [
            {
                "name": definition.name,
                "kind": "local",
                "description": (definition.instructions.strip().splitlines() or [""])[0],
                "model": definition.model or loaded.default_model,
                "tools": definition.toolset().names(),
                # Their tools are listed by the server when a worker connects; named here by server.
                "mcp_servers": [server.name for server in definition.mcp_servers],
            }
            for definition in sorted(registry, key=lambda d: d.name)
        ]

    @cli.command()
    def approvals(
        status: Annotated[ApprovalStatus | None, typer.Option(help="Only approvals in this status.")] = (
            ApprovalStatus.PENDING
        ),
        task: Annotated[str | None, typer.Option(help="Only this task's.")] = None,
        limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
        api_url: ApiUrl = None,
    ) -> None:
        """List tool calls that wait for a person (by default the pending ones), oldest first, as {items}."""
        with client(api_url) as api:
            _emit(api.approvals(status=status, task_id=task, limit=limit))

    @cli.command()
    def approve(
        task_id: TaskId,
        call_id: Annotated[str, typer.Argument(help="The waiting tool call's id (see `opscore approvals`).")],
        reason: Annotated[str | None, typer.Option(help="Recorded with the decision.")] = None,
        arguments: Annotated[
            str | None, typer.Option("--arguments", help="Run the tool with these JSON arguments instead.")
        ] = None,
        api_url: ApiUrl = None,
    ) -> None:
        """Approve a waiting tool call; the task resumes once every call it waits on is decided."""
        edited = _parse_json_object(arguments, "--arguments")
        with client(api_url) as api:
            _emit(api.decide(task_id, call_id, approve=True, reason=reason, arguments=edited))

    @cli.command()
    def deny(
        task_id: TaskId,
        call_id: Annotated[str, typer.Argument(help="The waiting tool call's id (see `opscore approvals`).")],
        reason: Annotated[str | None, typer.Option(help="Told to the model, and recorded.")] = None,
        api_url: ApiUrl = None,
    ) -> None:
        """Deny a waiting tool call: the model is told, and may go on without it."""
        with client(api_url) as api:
            _emit(api.decide(task_id, call_id, approve=False, reason=reason))


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (None means "not given": the server's or the settings' default applies)."""
    return {key: value for key, value in values.items() if value is not None}


def _parse_json_object(raw: str | None, option: str) -> JsonObject | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc.msg} at position {exc.pos}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter('must be a JSON object, e.g. \'{"url": "..."}\'', param_hint=option)
    return value


def _emit(document: JsonObject) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _show_task(task: JsonObject, as_json: bool) -> None:
    if as_json:
        _emit(task)
        return
    from ops_core.terminal import make_console, task_card

    make_console().print(task_card(task))


def _exit_for(task: JsonObject, *, waited: float | None, quiet: bool = False) -> None:
    """Exit 0 for a completed task; 1, with one line on stderr, for any other end or a wait that ran out."""
    state = TaskStatus(task["status"])
    if state is TaskStatus.COMPLETED:
        return
    if not state.is_terminal:
        after = "" if waited is None else f" after waiting {waited:g}s"
        typer.echo(f"error: task {task['id']} is still {state}{after}", err=True)
        raise typer.Exit(EXIT_FAILED)
    if not quiet:
        error = task.get("error") or {}
        reason = f": {error.get('type')}: {error.get('message')}" if error else ""
        typer.echo(f"error: task {task['id']} {state}{reason}", err=True)
    raise typer.Exit(EXIT_FAILED)
