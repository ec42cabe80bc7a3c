"""``opscore keys``: create, list and revoke API keys, straight against the database.

These run where the database is reachable (an operator's shell, a deploy job),
so the first admin key can be made before any key exists. ``/v1/keys`` offers
the same to an admin key over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ops_core.keys import DEFAULT_SCOPES, ApiKey, Scope
from ops_core.tenancy import EVERY_TENANT, TENANT_PATTERN

if TYPE_CHECKING:
    from ops_core.config import Settings

T = TypeVar("T")
MAX_DAYS = 3650


def _tenant(value: str | None) -> str | None:
    if value is not None and not TENANT_PATTERN.match(value):
        raise typer.BadParameter("lower-case letters, digits, '_', '.' or '-', at most 100", param_hint="--tenant")
    return value


def build_keys_cli(settings: Callable[[], Settings], exit_code: int) -> typer.Typer:
    keys = typer.Typer(help="API keys (run where the database is reachable).", no_args_is_help=True)

    def run(operation: Callable[..., Awaitable[T]]) -> T:
        from ops_core import preflight
        from ops_core.db.access import AccessStore
        from ops_core.db.engine import create_engine
        from ops_core.errors import OpsCoreError

        loaded = settings()
        try:
            preflight.wait_for_database(loaded)
        except OpsCoreError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(exit_code) from None

        async def main() -> T:
            engine = create_engine(loaded)
            try:
                return await operation(AccessStore(engine))
            finally:
                await engine.dispose()

        try:
            return asyncio.run(main())
        except OpsCoreError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(exit_code) from None

    @keys.command("create")
    def create(
        tenant: Annotated[str, typer.Option(help="The tenant whose data the key reaches.", callback=_tenant)],
        scope: Annotated[
            list[Scope] | None,
            typer.Option(help="Repeat for several; default: tasks:read and tasks:write. admin has every scope."),
        ] = None,
        name: Annotated[str | None, typer.Option(help="A label to tell keys apart.")] = None,
        expires_in: Annotated[
            int | None, typer.Option("--expires-in", min=1, max=MAX_DAYS, help="Days until the key expires.")
        ] = None,
    ) -> None:
        """Create a key. The secret is printed once, alone on the last line: store it now."""
        from ops_core.db.rules import utcnow

        expires_at = None if expires_in is None else utcnow() + timedelta(days=expires_in)
        key, secret = run(
            lambda access: access.create_key(
                tenant=tenant, scopes=scope or DEFAULT_SCOPES, name=name, expires_at=expires_at
            )
        )
        typer.echo(f"created key {key.id} for tenant {key.tenant} with scopes {', '.join(key.scopes)}", err=True)
        typer.echo(secret)

    @keys.command("list")
    def list_keys(
        tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.", callback=_tenant)] = None,
    ) -> None:
        """Every key with its tenant, scopes, expiry and last use; never a secret."""
        found = run(lambda access: access.list_keys(tenant=EVERY_TENANT if tenant is None else tenant))
        typer.echo("ID                TENANT           SCOPES                      STATE    CREATED    LAST USED  NAME")
        for key in found:
            typer.echo(_row(key))

    @keys.command("revoke")
    def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (not its secret).")]) -> None:
        """Revoke a key: every API process refuses it within OPSCORE_AUTH_CACHE_SECONDS."""
        key = run(lambda access: access.revoke_key(key_id, tenant=EVERY_TENANT))
        typer.echo(f"revoked key {key.id} of tenant {key.tenant}")

    return keys


def _row(key: ApiKey) -> str:
    from ops_core.db.rules import utcnow

    if key.revoked_at is not None:
        state = "revoked"
    elif not key.usable(utcnow()):
        state = "expired"
    else:
        state = "active"
    last = key.last_used_at.date().isoformat() if key.last_used_at else "never"
    return (
        f"{key.id:<17} {key.tenant:<16} {','.join(key.scopes):<27} {state:<8} "
        f"{key.created_at.date().isoformat():<10} {last:<10} {key.name or ''}"
    )
