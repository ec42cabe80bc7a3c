"""Who is calling: the bearer key of each ``/v1`` request, checked against the store, and its scopes.

A key's row is cached for ``OPSCORE_AUTH_CACHE_SECONDS`` per API process, so a
revoked or expired key stops working everywhere within that bound while the
submit path pays no database read for authentication. The presented secret is
hashed and compared on every request, cached or not.

Every failure (no header, not a bearer key, malformed, unknown, revoked,
expired) is the same 401: the answer does not tell a guesser which part was
wrong. A valid key without the scope the operation needs gets 403.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from ops_core.api.errors import ops_core_error_response
from ops_core.config import Settings
from ops_core.db.access import LAST_USED_PRECISION, AccessStore, StoredKey
from ops_core.db.rules import utcnow
from ops_core.errors import DatabaseUnavailable, Forbidden, OpsCoreError, Unauthenticated, Unavailable
from ops_core.keys import Caller, Scope, key_id_of, secret_matches
from ops_core.tenancy import DEFAULT_TENANT
from ops_core.ttl import TtlCache

UNAUTHENTICATED = "a valid API key is required: send Authorization: Bearer <key>"

# With OPSCORE_AUTH=disabled every request acts as this: the default tenant, every scope.
ANONYMOUS = Caller(key_id="-", tenant=DEFAULT_TENANT, scopes=frozenset(Scope))


@dataclass(frozen=True, slots=True)
class _Key:
    """What is cached per key id: its row (None for an unknown id) and the caller it stands for."""

    stored: StoredKey | None
    caller: Caller | None


class Authenticator:
    def __init__(
        self,
        access: AccessStore,
        *,
        cache_seconds: float,
        lookup_seconds: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._access = access
        self._lookup_seconds = lookup_seconds
        self._cache: TtlCache[str, _Key] = TtlCache(cache_seconds, clock=clock)

    async def caller(self, secret: str) -> Caller:
        """The caller ``secret`` stands for; :class:`Unauthenticated` for any secret that is not a usable key."""
        key_id = key_id_of(secret)
        if key_id is None:
            raise Unauthenticated(UNAUTHENTICATED)
        found = await self._cache.get(key_id, self._lookup)
        stored = found.stored
        if stored is None or not secret_matches(secret, stored.secret_hash) or not stored.key.usable(utcnow()):
            raise Unauthenticated(UNAUTHENTICATED)
        assert found.caller is not None
        return found.caller

    async def _lookup(self, key_id: str) -> _Key:
        # Bounded here, on the only path that waits for the database: a cached key costs no timer.
        try:
            async with asyncio.timeout(self._lookup_seconds):
                stored = await self._access.stored_key(key_id)
                if stored is not None and stored.key.usable(utcnow()):
                    last = stored.key.last_used_at
                    # Written when the key is looked up again, not per request, and only to the minute.
                    if last is None or utcnow() - last >= LAST_USED_PRECISION:
                        await self._access.touch(key_id, utcnow())
        except TimeoutError:
            raise DatabaseUnavailable(f"the database did not answer within {self._lookup_seconds:g}s") from None
        if stored is None:
            return _Key(None, None)
        return _Key(
            stored, Caller(key_id=key_id, tenant=stored.key.tenant, scopes=frozenset(_scopes(stored.key.scopes)))
        )


def _scopes(names: list[str]) -> list[Scope]:
    # A scope this version does not know (written by a newer one) grants nothing.
    return [Scope(name) for name in names if name in Scope._value2member_map_]


# Declares the scheme in the OpenAPI document; the check itself is AuthMiddleware's.
_bearer = HTTPBearer(auto_error=False, description="An API key: opsk_…")

PROTECTED = ("/v1/", "/metrics", "/mcp")
# A remote agent's callbacks authenticate by their webhook signature instead (api/routes/agents.py).
SIGNED = "/v1/remote/"


class AuthMiddleware:
    """Authenticates every request to a protected path before anything reads its body.

    Here rather than in a dependency because FastAPI decodes a request's JSON
    body before it runs dependencies: a caller without a key would learn from a
    422 what is wrong with its body, instead of getting the 401 it is owed.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self._required = settings.auth_required

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self._required or not path.startswith(PROTECTED) or path.startswith(SIGNED):
            await self.app(scope, receive, send)
            return
        try:
            caller = await self._caller(scope)
        except OpsCoreError as exc:
            await ops_core_error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    async def _caller(self, scope: ASGIScope) -> Caller:
        authenticator: Authenticator | None = getattr(scope["app"].state, "authenticator", None)
        return await authenticate(authenticator, _authorization(scope))


async def authenticate(authenticator: Authenticator | None, authorization: str) -> Caller:
    """The caller an ``Authorization`` value (HTTP header or gRPC metadata) stands for: ``Bearer <key>``."""
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated(UNAUTHENTICATED)
    if authenticator is None:
        raise Unavailable("the API is not ready to serve requests")
    return await authenticator.caller(secret.strip())


def check_scope(caller: Caller, scope: Scope) -> Caller:
    """``caller``, if its key has ``scope``; :class:`Forbidden` otherwise."""
    if not caller.allows(scope):
        raise Forbidden(f"this key lacks the {scope.value} scope")
    return caller


def _authorization(scope: ASGIScope) -> str:
    # Scanned by hand, as body_limit.py does: a Headers object per request costs on the submit path.
    for name, raw in scope["headers"]:
        if name == b"authorization":
            return str(raw.decode("latin-1"))
    return ""


def require(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency that answers the caller AuthMiddleware found, if its key has ``scope`` (admin has every scope)."""

    async def caller(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Caller:
        if not request.app.state.settings.auth_required:
            return ANONYMOUS
        found: Caller = request.state.caller
        return check_scope(found, scope)

    return caller


Reader = Annotated[Caller, Depends(require(Scope.TASKS_READ))]
Writer = Annotated[Caller, Depends(require(Scope.TASKS_WRITE))]
Admin = Annotated[Caller, Depends(require(Scope.ADMIN))]
MetricsReader = Annotated[Caller, Depends(require(Scope.METRICS))]
WebhookAdmin = Annotated[Caller, Depends(require(Scope.WEBHOOKS))]
