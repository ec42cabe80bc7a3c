"""A tiny scriptable HTTP/1.1 server on 127.0.0.1 for provider-client tests.

It runs on the test's own event loop (``asyncio.start_server``), answers each
request with the next scripted response, and records what it received. Every
response closes its connection, which keeps the parser trivial and makes SSE
bodies end where the stream ends.

``FakeServer(strict=...)`` passes every request and its scripted answer
through a rule that may change the answer, the way a real server stricter than
the provider's own API would (see ``openai_wire.LlamaCppPython``).
:func:`refusing_url` gives an address where connections are refused, and
:func:`plain_http_url` one that answers a TLS handshake in plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Scripted:
    """One canned answer: a JSON body, or SSE events streamed one write at a time."""

    status: int = 200
    body: Any = None
    sse: list[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Strictness = Callable[["Recorded", Scripted], Scripted]
"""Given a request and the answer scripted for it, the answer a stricter server would give."""


class FakeServer:
    """``async with FakeServer() as server:`` then ``server.base_url``, ``server.script(...)``."""

    def __init__(self, strict: Strictness | None = None) -> None:
        self._strict = strict
        self._script: deque[Scripted] = deque()
        self.requests: list[Recorded] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *responses: Scripted) -> None:
        self._script.extend(responses)

    async def __aenter__(self) -> FakeServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Handlers still sleeping (timeout tests) must not outlive the test's loop.
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (its timeout); nothing left to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        parts = urlsplit(target)
        recorded = Recorded(method, parts.path, parse_qs(parts.query), headers, body)
        self.requests.append(recorded)
        if not self._script:
            await self._write(writer, Scripted(status=500, body={"error": {"message": "fake: script exhausted"}}))
            return
        response = self._script.popleft()
        if self._strict is not None:
            response = self._strict(recorded, response)
        if response.delay:
            await asyncio.sleep(response.delay)
        await self._write(writer, response)

    async def _write(self, writer: asyncio.StreamWriter, response: Scripted) -> None:
        reason = _REASONS.get(response.status, "Status")
        lines = [f"HTTP/1.1 {response.status} {reason}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        if response.sse is not None:
            lines += ["Content-Type: text/event-stream", "Cache-Control: no-cache"]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            for event in response.sse:
                writer.write(event.encode())
                await writer.drain()
            return
        payload = json.dumps(response.body if response.body is not None else {}).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await writer.drain()


@contextlib.contextmanager
def refusing_url() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` where every connection is refused.

    The port is bound but never listened on, so the kernel answers each
    connection attempt with a reset and no other process can take the port meanwhile.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def plain_http_url() -> AsyncIterator[str]:
    """``https://127.0.0.1:PORT`` served by plain HTTP: a client's TLS handshake gets a 400 in clear text."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def sse_data(payload: Any) -> str:
    """One ``data:`` event (OpenAI and Gemini style)."""
    return f"data: {json.dumps(payload)}\n\n"


def sse_event(event: str, payload: Any) -> str:
    """One named event (Anthropic style)."""
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n"


class SleepRecorder:
    """Stands in for asyncio.sleep inside RetryPolicy: records each wait, returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
