"""The ``opscore`` command: server processes, migrations, and a client for the REST API.

Exit codes: 0 success; 1 the API refused or failed the request, could not be
reached, or a waited-for task did not complete; 2 bad settings or bad usage.

Start-up cost is the rule here: ``import ops_core.cli`` loads typer and the
standard library only (a test holds it). Settings (pydantic), the HTTP client
(httpx), rich and every server piece (uvicorn, SQLAlchemy, Dramatiq, agentkit)
are imported inside the commands that use them, so ``opscore --help`` and a
client command pay only for what they run. For the same reason the help is
click's plain text (``rich_markup_mode=None``): typer's rich help would load
rich's markdown and syntax modules on every ``--help``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ops_core.client_cli import EXIT_FAILED, EXIT_USAGE, add_client_commands, given
from ops_core.errors import ConfigError, Unavailable
from ops_core.keys_cli import build_keys_cli

if TYPE_CHECKING:
    import httpx

    from ops_core.config import Settings

DISTRIBUTION = "ops-core"

HostOpt = Annotated[str | None, typer.Option(help="Interface to bind (default: OPSCORE_HOST).")]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535, help="Port to bind (default: OPSCORE_PORT).")]
GrpcPortOpt = Annotated[
    int | None,
    typer.Option(min=1, max=65535, help="Also serve the gRPC TaskService on this port (default: OPSCORE_GRPC_PORT)."),
]


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
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @cli.callback()
    def root(
        version: Annotated[
            bool,
            typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
        ] = False,
    ) -> None:
        """ops-core: a durable task orchestrator for agent runs."""

    db = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
    cli.add_typer(db, name="db")
    cli.add_typer(build_keys_cli(_settings, EXIT_FAILED), name="keys")

    # --- server processes -------------------------------------------------

    @cli.command()
    def api(host: HostOpt = None, port: PortOpt = None, grpc_port: GrpcPortOpt = None) -> None:
        """Serve the REST API (OpenAPI docs at /docs)."""
        from ops_core.api.app import create_app
        from ops_core.api.server import serve

        settings = _settings(**given(host=host, port=port, grpc_port=grpc_port))
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
        settings = _settings(**given(worker_concurrency=concurrency, worker_threads=threads))
        _check_agents(settings)
        from ops_core import preflight

        with _unavailable():
            preflight.wait_for_broker(settings)
            preflight.wait_for_database(settings)
        from ops_core.worker.pool import run_pool

        run_pool(settings, processes, settings.worker_threads, settings.worker_concurrency)

    @cli.command()
    def dev(host: HostOpt = None, port: PortOpt = None, grpc_port: GrpcPortOpt = None) -> None:
        """Run the API and a worker in one process (SQLite + in-memory broker by default)."""
        settings = _settings(**given(host=host, port=port, grpc_port=grpc_port))
        _check_agents(settings)
        from ops_core.dev import run_dev

        run_dev(settings, host=settings.host, port=settings.port)

    @cli.command()
    def mcp() -> None:
        """Serve ops-core's MCP tools over stdio (for Claude Desktop and other MCP clients), as OPSCORE_API_KEY."""
        import asyncio

        from ops_core.errors import Unauthenticated
        from ops_core.logs import configure_logging
        from ops_core.mcp_stdio import serve_stdio

        settings = _settings()
        _check_agents(settings)
        configure_logging(settings.log_level)  # on stderr: stdout carries the protocol
        try:
            with _unavailable():
                asyncio.run(serve_stdio(settings))
        except ConfigError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        except Unauthenticated:
            typer.echo("error: OPSCORE_API_KEY is not a valid, usable API key", err=True)
            raise typer.Exit(EXIT_USAGE) from None

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

    add_client_commands(cli, settings=_settings, transport=transport, sleep=sleep, clock=clock)
    return cli


def main() -> None:
    build_cli()()


def _settings(**overrides: Any) -> Settings:
    from ops_core.config import load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import version

    typer.echo(f"opscore {version(DISTRIBUTION)}")
    raise typer.Exit()


def _check_agents(settings: Settings) -> None:
    """Load OPSCORE_AGENTS before anything starts: a module that cannot be loaded is one line, not a traceback."""
    from ops_core.agents import load_agents

    try:
        load_agents(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@contextmanager
def _unavailable() -> Iterator[None]:
    """A database or broker that refuses or never answers: one line naming the setting, no traceback."""
    try:
        yield
    except Unavailable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
