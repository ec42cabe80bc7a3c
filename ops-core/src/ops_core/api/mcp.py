"""``/mcp``: ops-core's MCP server (:mod:`ops_core.mcp_server`) over Streamable HTTP, on the API.

Stateless, with JSON answers: no session lives in one API process, so any
process behind a load balancer answers any request. ``AuthMiddleware``
checks the bearer key before the request reaches the MCP transport, exactly
as for ``/v1``, and each tool call acts as that key's caller.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from ops_core.api.auth import ANONYMOUS
from ops_core.config import Settings
from ops_core.keys import Caller
from ops_core.mcp_server import build_mcp_server
from ops_core.runtime import Runtime

MCP_PATH = "/mcp"


def install_mcp(app: FastAPI, settings: Settings) -> MCPServer:
    """Route ``/mcp`` to a new MCP server; the app's lifespan runs its ``session_manager``."""

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

    server = build_mcp_server(runtime, caller_of)
    transport = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        # Every request carries a bearer key (AuthMiddleware), which a rebinding page cannot send;
        # the Host check would refuse the API's real host names.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=settings.max_body_bytes,
    )
    app.router.routes.append(Route(MCP_PATH, endpoint=transport, include_in_schema=False))
    return server
