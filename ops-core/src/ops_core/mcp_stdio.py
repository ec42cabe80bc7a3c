"""``opscore mcp``: ops-core's MCP server (:mod:`ops_core.mcp_server`) over stdio, for a local MCP client.

The process talks to the database and the broker as the API does, and acts as
the key in ``OPSCORE_API_KEY``: the same tenant and scopes as that key over
REST. The key is checked at start-up and again on each call (through the
API's cache), so a revoked key stops working here too. Nothing is printed
on stdout but the protocol; logs go to stderr.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from ops_core.api.auth import ANONYMOUS, Authenticator
from ops_core.config import Settings
from ops_core.errors import ConfigError
from ops_core.keys import Caller
from ops_core.mcp_server import build_mcp_server
from ops_core.runtime import Runtime


async def serve_stdio(settings: Settings) -> None:
    """Serve until the client closes stdin; raises ``Unauthenticated`` for a key that is not valid."""
    if settings.auth_required and settings.api_key is None:
        raise ConfigError("opscore mcp acts as an API key: set OPSCORE_API_KEY (or OPSCORE_AUTH=disabled)")
    runtime = Runtime.open(settings)
    try:
        authenticator = Authenticator(
            runtime.access,
            cache_seconds=settings.auth_cache_seconds,
            lookup_seconds=settings.request_deadline_seconds,
        )

        async def caller_of(ctx: Context[Any, Any] | None = None) -> Caller:
            if settings.api_key is None:
                return ANONYMOUS
            return await authenticator.caller(settings.api_key.get_secret_value())

        await caller_of()  # a wrong key fails here, in one line, before the client sees any tool
        await build_mcp_server(lambda: runtime, caller_of).run_stdio_async()
    finally:
        await runtime.close()
        runtime.broker.close()
