"""MCP servers as toolsets: their tools become ordinary agentkit tools.

An :class:`McpServer` describes a server (a command run over stdio, or a
Streamable HTTP URL with headers); an agent names servers in
``AgentDefinition.mcp_servers``. :class:`McpSessions` keeps one live
connection per server and lists each server's tools as :class:`McpTool`\\ s:
``Tool``\\ s whose schema is the server's JSON schema. So an MCP tool goes
through the same validation, policy decision, timeout and events as a local
one, and nothing downstream can tell them apart.

A connection that breaks (the stdio process died, the HTTP server went away)
is dropped: the call in flight ends as a retryable
:class:`~agentkit.errors.ToolUnavailable` tool error, and the next call opens
a new connection (a stdio server is started again).

``${NAME}`` in a server's ``url``, ``args``, ``env`` and ``headers`` is read
from the environment when the connection opens, so credentials live in the
host's environment, not in agent definitions or task input.

The ``mcp`` SDK is imported when a connection opens, not with this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import pydantic_core
from anyio.abc import ObjectReceiveStream
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentkit.context import RunContext
from agentkit.errors import ToolDefinitionError, ToolUnavailable
from agentkit.tools import Tool, ToolOutput, Toolset

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from mcp import Client
    from mcp_types import CallToolResult
    from mcp_types import Tool as RemoteTool

__all__ = ["McpServer", "McpSessions", "McpTool"]

log = logging.getLogger(__name__)

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
CLOSE_TIMEOUT = 10.0


class McpServer(BaseModel):
    """One MCP server: ``command`` (stdio) or ``url`` (Streamable HTTP), not both.

    ``prefix``: tools are named ``{prefix}_{tool}`` (the qualified name a
    policy allows or denies), so two servers' tools cannot clash.
    ``timeout``: seconds per call; ``None`` uses the agent's ``Limits.tool_timeout``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = Field(default_factory=dict)
    prefix: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,32}$")
    timeout: float | None = Field(default=None, gt=0)
    connect_timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: give exactly one of command (stdio) or url (HTTP)")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError(f"MCP server {self.name!r}: args, env and cwd are for stdio servers")
        if self.command is not None and self.headers:
            raise ValueError(f"MCP server {self.name!r}: headers are for HTTP servers")
        return self

    @classmethod
    def stdio(
        cls,
        name: str,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        prefix: str | None = None,
        timeout: float | None = None,
    ) -> McpServer:
        return cls(
            name=name, command=command, args=tuple(args), env=dict(env or {}), cwd=cwd, prefix=prefix, timeout=timeout
        )

    @classmethod
    def http(
        cls,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        prefix: str | None = None,
        timeout: float | None = None,
    ) -> McpServer:
        return cls(name=name, url=url, headers=dict(headers or {}), prefix=prefix, timeout=timeout)

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def tool_name(self, remote: str) -> str:
        """The agentkit name of the server's tool ``remote``: prefixed, and fit for every provider."""
        name = f"{self.prefix}_{remote}" if self.prefix else remote
        return _BAD_NAME_CHARS.sub("_", name)[:64]


def expand(value: str, environ: Mapping[str, str]) -> str:
    """``${NAME}`` replaced by the environment's value; a missing variable is a configuration error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ToolDefinitionError(f"environment variable {name} is not set (referenced as ${{{name}}})")
        return environ[name]

    return _ENV_RE.sub(one, value)


class _McpArguments(BaseModel):
    """A call's arguments once they passed the server's JSON schema (the schema itself validates)."""

    model_config = ConfigDict(extra="allow")


class McpTool(Tool):
    """A tool of an MCP server: validated against the server's JSON schema, run by the server."""

    def __init__(self, connection: McpConnection, remote: RemoteTool) -> None:
        from jsonschema.validators import validator_for

        server = connection.server
        self.connection = connection
        self.remote_name = remote.name
        self.name = server.tool_name(remote.name)
        self.description = remote.description or ""
        self.timeout = server.timeout
        self.function = self._unbound
        self.is_async = True
        self.takes_context = False
        self.args_model = _McpArguments
        schema = dict(remote.input_schema)
        schema.pop("title", None)
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        self.parameters = schema
        try:
            cls = validator_for(schema)
            cls.check_schema(schema)
        except Exception as exc:
            raise ToolDefinitionError(
                f"MCP server {server.name!r}: tool {remote.name!r} has an invalid schema: {exc}"
            ) from exc
        self._validator: Validator = cls(schema)

    def _unbound(self, **arguments: Any) -> Any:
        raise TypeError(f"MCP tool {self.name!r} runs on its server: use Tool.run")

    def validate(self, arguments: Mapping[str, Any]) -> BaseModel:
        """Check the arguments against the server's schema; raises pydantic's ``ValidationError``."""
        data = dict(arguments)
        errors = sorted(self._validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            raise pydantic_core.ValidationError.from_exception_data(
                f"{self.name}_arguments",
                [
                    pydantic_core.InitErrorDetails(
                        type=pydantic_core.PydanticCustomError("json_schema", "{problem}", {"problem": e.message}),
                        loc=tuple(e.absolute_path),
                        input=e.instance,
                    )
                    for e in errors
                ],
            )
        return _McpArguments.model_validate(data)

    async def execute(self, validated: BaseModel, ctx: RunContext[Any], *, default_timeout: float) -> ToolOutput:
        arguments = validated.model_dump()
        return await self.guarded(self._call(arguments), default_timeout=default_timeout)

    async def _call(self, arguments: dict[str, Any]) -> ToolOutput:
        result = await self.connection.call_tool(self.remote_name, arguments)
        text = render_result(result)
        if result.is_error:
            return ToolOutput(text or f"Tool {self.name!r} failed on its MCP server.", True, "exception")
        return ToolOutput(text)

    def __repr__(self) -> str:
        return f"McpTool({self.name!r}, server={self.connection.server.name!r})"


def render_result(result: CallToolResult) -> str:
    """A tool result as the text a model reads: its text blocks, else its structured content."""
    from mcp_types import EmbeddedResource, ImageContent, ResourceLink, TextContent, TextResourceContents

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource) and isinstance(block.resource, TextResourceContents):
            parts.append(block.resource.text)
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource {block.uri}]")
        elif isinstance(block, ImageContent):
            parts.append(f"[image {block.mime_type}, {len(block.data)} base64 characters]")
        else:
            parts.append(f"[{block.type} content]")
    if not parts and result.structured_content is not None:
        return pydantic_core.to_json(result.structured_content, fallback=str).decode()
    return "\n".join(parts)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups, for a one-line message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _stderr() -> TextIO:
    # A stdio server's stderr goes to ours; pytest's captured stderr has no file descriptor.
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.__stderr__ if sys.__stderr__ is not None else open(os.devnull, "w")
    return sys.stderr


class _WatchedReceive(ObjectReceiveStream[Any]):
    """A transport's receive stream that sets ``lost`` when the server's side ends."""

    def __init__(self, inner: ObjectReceiveStream[Any], lost: asyncio.Event) -> None:
        self._inner = inner
        self._lost = lost

    @property
    def last_context(self) -> Any:  # the SDK reads it when the transport provides it
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._lost.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.asynccontextmanager
async def _watched(transport: Any, lost: asyncio.Event) -> AsyncIterator[tuple[Any, Any]]:
    async with transport as (read_stream, write_stream):
        yield _WatchedReceive(read_stream, lost), write_stream


class McpConnection:
    """The live connection to one server, opened on first use and again after it breaks.

    The SDK's client is an async context manager whose task groups must be
    entered and left by one task, so a holder task owns it for as long as the
    connection lives; calls from any run share it.
    """

    def __init__(self, server: McpServer, environ: Mapping[str, str] | None = None) -> None:
        self.server = server
        self._environ = environ
        self._client: Client | None = None
        self._stop: asyncio.Event | None = None
        self._holder: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._tools: list[McpTool] | None = None
        self._closed = False
        # Holders of connections that ended by themselves, still closing theirs; awaited by aclose.
        self._retired: set[asyncio.Task[None]] = set()
        self.connects = 0
        """How many times a connection was opened (the first one and every reconnect)."""

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def tools(self) -> list[McpTool]:
        """The server's tools, listed once (every page) on first use."""
        if self._tools is None:
            client, generation = await self._connected()
            try:
                listed: list[RemoteTool] = []
                cursor: str | None = None
                while True:
                    async with asyncio.timeout(self.server.connect_timeout):
                        page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            except Exception as exc:
                await self._drop(generation)
                raise ToolUnavailable(
                    f"MCP server {self.server.name!r}: listing its tools failed: {_leaf(exc)}"
                ) from exc
            self._tools = [McpTool(self, remote) for remote in listed]
        return self._tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call a tool; a broken connection raises ``ToolUnavailable`` and is reopened by the next call."""
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        client, generation = await self._connected()
        try:
            return await client.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise  # the server answered with a protocol error: the call, not the connection, is wrong
            await self._drop(generation)
            raise ToolUnavailable(self._lost(name, exc)) from exc
        except Exception as exc:
            await self._drop(generation)
            raise ToolUnavailable(self._lost(name, _leaf(exc))) from exc

    def _lost(self, name: str, cause: BaseException) -> str:
        return (
            f"MCP server {self.server.name!r} disconnected during the call to {name!r} ({cause}); "
            "it is being reconnected: call the tool again."
        )

    async def _connected(self) -> tuple[Client, int]:
        client = self._client
        if client is not None:
            return client, self._generation
        async with self._lock:
            if self._closed:
                raise ToolUnavailable(f"MCP server {self.server.name!r}: its sessions are closed")
            if self._client is None:
                await self._open()
            assert self._client is not None
            return self._client, self._generation

    async def _open(self) -> None:
        transport = self._transport()  # configuration errors (a missing variable) raise here, as they are
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        holder = asyncio.create_task(self._hold(transport, ready, stop), name=f"mcp-{self.server.name}")
        try:
            async with asyncio.timeout(self.server.connect_timeout):
                client = await asyncio.shield(ready)
        except BaseException as exc:
            stop.set()
            holder.cancel()
            with contextlib.suppress(BaseException):
                await holder
            if isinstance(exc, asyncio.CancelledError):
                raise
            what = "timed out" if isinstance(exc, TimeoutError) else str(_leaf(exc))
            raise ToolUnavailable(
                f"MCP server {self.server.name!r} ({self.server.transport}) could not be reached: {what}"
            ) from exc
        self._client, self._stop, self._holder = client, stop, holder
        self._generation += 1
        self.connects += 1
        log.info("MCP server %s connected (connection %d)", self.server.name, self.connects)

    async def _hold(self, transport: Any, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        from mcp import Client

        lost = asyncio.Event()
        me = asyncio.current_task()
        assert me is not None
        try:
            async with Client(_watched(transport, lost), cache=None) as client:
                ready.set_result(client)
                ending = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
                try:
                    await asyncio.wait(ending, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in ending:
                        waiter.cancel()
                if lost.is_set() and self._holder is me:
                    # The server went away between calls (a stdio process died): forget this
                    # connection now, so the next call opens a new one instead of failing.
                    log.warning("MCP server %s: connection lost; the next call reconnects", self.server.name)
                    self._client = self._stop = self._holder = None
                    self._retired.add(me)
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.debug("MCP server %s: closing raised %s", self.server.name, _leaf(exc))
        finally:
            self._retired.discard(me)

    def _transport(self) -> Any:
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        environ = self._environ if self._environ is not None else os.environ
        server = self.server
        if server.command is not None:
            params = StdioServerParameters(
                command=expand(server.command, environ),
                args=[expand(arg, environ) for arg in server.args],
                env={key: expand(value, environ) for key, value in server.env.items()} or None,
                cwd=server.cwd,
            )
            return stdio_client(params, errlog=_stderr())
        assert server.url is not None
        url = expand(server.url, environ)
        headers = {key: expand(value, environ) for key, value in server.headers.items()}

        @contextlib.asynccontextmanager
        async def http() -> AsyncIterator[tuple[Any, Any]]:
            # The SDK leaves a client it was given open: this connection owns it.
            async with (
                create_mcp_http_client(headers=headers) as client,
                streamable_http_client(url, http_client=client) as streams,
            ):
                yield streams

        return http()

    async def _drop(self, generation: int) -> None:
        """Close the connection ``generation`` if it is still the current one."""
        async with self._lock:
            if generation != self._generation or self._client is None:
                return
            log.warning("MCP server %s: connection lost; the next call reconnects", self.server.name)
            await self._shut()

    async def _shut(self) -> None:
        stop, holder = self._stop, self._holder
        self._client = self._stop = self._holder = None
        if stop is not None:
            stop.set()
        if holder is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await asyncio.shield(holder)
            except TimeoutError:
                holder.cancel()
                with contextlib.suppress(BaseException):
                    await holder

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            await self._shut()
        if self._retired:
            await asyncio.wait(list(self._retired), timeout=CLOSE_TIMEOUT)


class McpSessions:
    """One connection per server name, shared by every run that names the server; close with ``aclose``.

    ``environ`` is where ``${NAME}`` references are looked up (``os.environ`` by default).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._connections: dict[str, McpConnection] = {}

    def connection(self, server: McpServer) -> McpConnection:
        existing = self._connections.get(server.name)
        if existing is None:
            existing = self._connections[server.name] = McpConnection(server, self._environ)
        elif existing.server != server:
            raise ToolDefinitionError(f"two different MCP servers are named {server.name!r}")
        return existing

    async def toolset(self, servers: Sequence[McpServer]) -> Toolset:
        """Every tool of ``servers``, connecting to each as needed (together, not one after another)."""
        listed = await asyncio.gather(*(self.connection(server).tools() for server in servers))
        return Toolset(*listed)

    def __iter__(self) -> Iterator[McpConnection]:
        return iter(list(self._connections.values()))

    async def aclose(self) -> None:
        connections = list(self._connections.values())
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)

    async def __aenter__(self) -> McpSessions:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
