"""An MCP server the tests control, written with the SDK's ``MCPServer`` (FastMCP).

Over stdio: ``python -m tests.support.mcp_servers`` (from the repository root).
Each call is appended to the file ``MCP_TEST_CALLS`` names, when set, so a test
counts calls across server restarts. Over Streamable HTTP: :class:`HttpMcpServer`
serves it from a thread and refuses requests without the expected bearer token.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.support.processes import free_port

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def build_server(calls: list[str] | None = None) -> MCPServer:
    server = MCPServer("opscore-test")

    def record(what: str) -> None:
        if calls is not None:
            calls.append(what)
        path = os.environ.get("MCP_TEST_CALLS")
        if path:
            with Path(path).open("a") as f:
                f.write(what + "\n")

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        record(f"add {a} {b}")
        return str(a + b)

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        record(f"slow {seconds}")
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool()
    def pid() -> str:
        """This server's process id."""
        record("pid")
        return str(os.getpid())

    @server.tool()
    def fail() -> str:
        """Always fails."""
        record("fail")
        raise ToolError("this tool always fails")

    return server


class _RequireBearer:
    """Refuses every request without ``Authorization: Bearer <token>``, as a real deployment's proxy would."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            self.refused += 1
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await self.app(scope, receive, send)


class HttpMcpServer:
    """The test server over Streamable HTTP on a free port, in a thread; ``calls`` records every call."""

    def __init__(self, token: str, *, port: int | None = None) -> None:
        self.calls: list[str] = []
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        app = build_server(self.calls).streamable_http_app()
        self.guard = _RequireBearer(app, token)
        config = uvicorn.Config(self.guard, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> HttpMcpServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test MCP server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


if __name__ == "__main__":
    build_server().run()
