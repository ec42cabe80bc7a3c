"""``/mcp``: ops-core's MCP server (:mod:`ops_core.mcp_server`) over Streamable HTTP, on the API.

Stateless, with JSON answers: no session lives in one API process, so any
process behind a load balancer answers any request. ``AuthMiddleware``
checks the bearer key before the request reaches the MCP transport, exactly
as for ``/v1``, and each tool call acts as that key's caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ops_core.api.auth import ANONYMOUS
from ops_core.api.errors import ops_core_error_response
from ops_core.config import Settings
from ops_core.errors import Unavailable
from ops_core.keys import Caller
from ops_core.mcp_server import build_mcp_server
from ops_core.runtime import Runtime

MCP_PATH = "/mcp"


class McpEndpoint:
    """The ASGI endpoint at ``/mcp``: a new transport (and session manager) for each run of the app's lifespan.

    The SDK's session manager runs once per instance, and an app's lifespan may run more than once
    (tests, an embedding process); outside it the endpoint answers 503 like the rest of the API.
    """

    def __init__(self, server: MCPServer, settings: Settings) -> None:
        self._server = server
        self._settings = settings
        self._transport: ASGIApp | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        transport = self._server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            # Every request carries a bearer key (AuthMiddleware), which a rebinding page cannot send;
            # the Host check would refuse the API's real host names.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=self._settings.max_body_bytes,
        )
        async with self._server.session_manager.run():
            self._transport = transport
            try:
                yield
            finally:
                self._transport = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = self._transport
        if transport is None:
            await ops_core_error_response(Unavailable("the API is not ready to serve requests"))(scope, receive, send)
            return
        await transport(scope, receive, send)


def install_mcp(app: FastAPI, settings: Settings) -> McpEndpoint:
    """Route ``/mcp`` to a new MCP server; the app's lifespan runs ``endpoint.running()``."""

    async def caller_of(ctx: Context[Any, Any]) -> Caller:
        if not settings.auth_required:
            return ANONYMOUS
        request = ctx.request_context.request
        caller = getattr(getattr(request, "state", None), "caller", None)
        if not isinstance(caller, Caller):  # unreachable past AuthMiddleware; never act as nobody
            raise ToolError("unauthenticated: a valid API key is required")
        return caller

    def runtime() -> Runtime:
        opened: Runtime | None = app.state.runtime
        if opened is None:
            raise ToolError("unavailable: the API is not ready to serve requests")
        return opened

    endpoint = McpEndpoint(build_mcp_server(runtime, caller_of), settings)
    app.router.routes.append(Route(MCP_PATH, endpoint=endpoint, include_in_schema=False))
    return endpoint
