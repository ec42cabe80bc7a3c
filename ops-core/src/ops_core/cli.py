"""The ``opscore`` command: server processes, migrations, and a client for the REST API.

Exit codes: 0 success; 1 the API refused or failed the request, could not be
reached, or a waited-for task did not complete; 2 bad settings or bad usage.
Server pieces are imported inside their commands, so a client command never
loads uvicorn, SQLAlchemy or Dramatiq.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import typer

from ops_core.api.client import ApiClient, ApiError, JsonObject, WaitTimeout
from ops_core.config import Settings, load_settings
from ops_core.domain import ApprovalStatus
from ops_core.errors import ConfigError, Unavailable
from ops_core.keys_cli import build_keys_cli
from ops_core.lifecycle import TaskStatus

EXIT_FAILED = 1
EXIT_USAGE = 2

ApiUrl = Annotated[
    str | None, typer.Option("--api-url", help="Base URL of the ops-core API (default: OPSCORE_API_URL).")
]
HostOpt = Annotated[str | None, typer.Option(help="Interface to bind (default: OPSCORE_HOST).")]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535, help="Port to bind (default: OPSCORE_PORT).")]


def build_cli(
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> typer.Typer:
    """Build the command tree; tests inject an HTTP transport and a fake clock."""
    cli = typer.Typer(
        name="opscore",
        help="ops-core: a durable task orchestrator for agent runs.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    db = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
    cli.add_typer(db, name="db")
    cli.add_typer(build_keys_cli(_settings, EXIT_FAILED), name="keys")

    @contextmanager
    def client(api_url: str | None) -> Iterator[ApiClient]:
        settings = _settings(**({"api_url": api_url} if api_url else {}))
        key = settings.api_key.get_secret_value() if settings.api_key else None
        with ApiClient(settings.api_url, api_key=key, transport=transport) as api, _api_errors():
            yield api

    # --- server processes -------------------------------------------------

    @cli.command()
    def api(host: HostOpt = None, port: PortOpt = None) -> None:
        """Serve the REST API (OpenAPI docs at /docs)."""
        from ops_core.api.app import create_app
        from ops_core.api.server import serve

        settings = _settings(**_given(host=host, port=port))
        _check_agents(settings)
        app = create_app(settings)
        gc.freeze()  # the app and every module it imported live as long as the process (see worker/process.py)
        serve(app, settings)

    @cli.command()
    def worker(
        processes: Annotated[int, typer.Option(min=1, help="Worker processes to fork.")] = 1,
        threads: Annotated[
            int | None, typer.Option(min=1, help="Dispatch threads per process (OPSCORE_WORKER_THREADS).")
        ] = None,
        concurrency: Annotated[
            int | None, typer.Option(min=1, help="Runs one process holds at once (OPSCORE_WORKER_CONCURRENCY).")
        ] = None,
    ) -> None:
        """Run a pool of worker processes that execute queued tasks."""
        settings = _settings(**_given(worker_concurrency=concurrency, worker_threads=threads))
        _check_agents(settings)
        from ops_core import preflight

        with _unavailable():
            preflight.wait_for_broker(settings)
            preflight.wait_for_database(settings)
        from ops_core.worker.pool import run_pool

        run_pool(settings, processes, settings.worker_threads, settings.worker_concurrency)

    @cli.command()
    def dev(host: HostOpt = None, port: PortOpt = None) -> None:
        """Run the API and a worker in one process (SQLite + in-memory broker by default)."""
        settings = _settings(**_given(host=host, port=port))
        _check_agents(settings)
        from ops_core.dev import run_dev

        run_dev(settings, host=settings.host, port=settings.port)

    @db.command()
    def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
        """Migrate the database schema up to REVISION."""
        settings = _settings()
        from ops_core import preflight
        from ops_core.db import migrate

        with _unavailable():
            preflight.wait_for_database(settings)
        migrate.upgrade(settings, revision=revision)
        typer.echo(f"database upgraded to {revision}")

    @db.command()
    def downgrade(
        revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops every table.")] = "-1",
    ) -> None:
        """Migrate the database schema down to REVISION (default: one step)."""
        settings = _settings()
        from ops_core import preflight
        from ops_core.db import migrate

        with _unavailable():
            preflight.wait_for_database(settings)
        migrate.downgrade(settings, revision=revision)
        typer.echo(f"database downgraded to {revision}")

    # --- client commands --------------------------------------------------

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
        priority: Annotated[int | None, typer.Option(min=0, max=9, help="0 (lowest) to 9.")] = None,
        max_retries: Annotated[int | None, typer.Option(min=0, max=100)] = None,
        wait: Annotated[bool, typer.Option("--wait", help="Poll until the task finishes.")] = False,
        timeout: Annotated[float, typer.Option(min=0.0, help="Seconds --wait polls before giving up.")] = 600.0,
        api_url: ApiUrl = None,
    ) -> None:
        """Submit a task and print it as JSON."""
        body: JsonObject = {"goal": goal}
        body.update(
            _given(
                agent=agent,
                model=model,
                input=_parse_json_object(input_json, "--input"),
                idempotency_key=idempotency_key,
                priority=priority,
                max_retries=max_retries,
            )
        )
        with client(api_url) as api:
            task = api.submit(body)
            if not wait:
                _emit(task)
                return
            try:
                task = api.wait(str(task["id"]), timeout=timeout, sleep=sleep, clock=clock)
            except WaitTimeout as exc:
                _emit(exc.task)
                raise
        _emit(task)
        _exit_for(task)

    @cli.command()
    def status(task_id: Annotated[str, typer.Argument(help="Task id.")], api_url: ApiUrl = None) -> None:
        """Print one task as JSON."""
        with client(api_url) as api:
            _emit(api.get_task(task_id))

    @cli.command()
    def tasks(
        status: Annotated[TaskStatus | None, typer.Option(help="Only tasks in this status.")] = None,
        agent: Annotated[str | None, typer.Option(help="Only tasks of this agent.")] = None,
        limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
        cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
        api_url: ApiUrl = None,
    ) -> None:
        """List tasks, newest first, as {items, next_cursor}."""
        with client(api_url) as api:
            _emit(api.list_tasks(status=status, agent=agent, limit=limit, cursor=cursor))

    @cli.command()
    def cancel(task_id: Annotated[str, typer.Argument(help="Task id.")], api_url: ApiUrl = None) -> None:
        """Cancel a task (a running task stops at its next step)."""
        with client(api_url) as api:
            _emit(api.cancel(task_id))

    @cli.command()
    def retry(task_id: Annotated[str, typer.Argument(help="Task id.")], api_url: ApiUrl = None) -> None:
        """Queue a failed or cancelled task again."""
        with client(api_url) as api:
            _emit(api.retry(task_id))

    @cli.command()
    def events(
        task_id: Annotated[str, typer.Argument(help="Task id.")],
        after_seq: Annotated[int, typer.Option(min=0, help="Only events after this sequence number.")] = 0,
        api_url: ApiUrl = None,
    ) -> None:
        """Print a task's events in order, as {items}."""
        with client(api_url) as api:
            _emit(api.events(task_id, after_seq=after_seq))

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
        task_id: Annotated[str, typer.Argument(help="Task id.")],
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
        task_id: Annotated[str, typer.Argument(help="Task id.")],
        call_id: Annotated[str, typer.Argument(help="The waiting tool call's id (see `opscore approvals`).")],
        reason: Annotated[str | None, typer.Option(help="Told to the model, and recorded.")] = None,
        api_url: ApiUrl = None,
    ) -> None:
        """Deny a waiting tool call: the model is told, and may go on without it."""
        with client(api_url) as api:
            _emit(api.decide(task_id, call_id, approve=False, reason=reason))

    return cli


def main() -> None:
    build_cli()()


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _check_agents(settings: Settings) -> None:
    """Load OPSCORE_AGENTS before anything starts: a module that cannot be loaded is one line, not a traceback."""
    from ops_core.agents import load_agents

    try:
        load_agents(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@contextmanager
def _api_errors() -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


@contextmanager
def _unavailable() -> Iterator[None]:
    """A database or broker that refuses or never answers: one line naming the setting, no traceback."""
    try:
        yield
    except Unavailable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _given(**values: Any) -> dict[str, Any]:
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


def _exit_for(task: JsonObject) -> None:
    state = TaskStatus(task["status"])
    if state is TaskStatus.COMPLETED:
        return
    error = task.get("error") or {}
    reason = f": {error.get('type')}: {error.get('message')}" if error else ""
    typer.echo(f"error: task {task['id']} {state}{reason}", err=True)
    raise typer.Exit(EXIT_FAILED)
