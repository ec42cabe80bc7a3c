"""How ``opscore api`` and ``opscore dev`` serve the app: uvicorn, with a bound on what one client can hold.

uvicorn already bounds open connections (``limit_concurrency``: a request
beyond it gets 503), idle keep-alive connections (``timeout_keep_alive``), the
listen backlog, and which peers may set ``X-Forwarded-*`` (``forwarded_allow_ips``).
What it lacks, and its httptools protocol gets here, is a bound on the request
head (``h11_max_incomplete_event_size`` exists only for the much slower h11
protocol; httptools buffers a header value of any size) and any deadline on a
connection that trickles its headers or its body. Hypercorn's ``read_timeout``
is per read (a trickle defeats it) and it has no connection bound; granian has
a header-read timeout but no body timeout, answers overload by queueing
rather than 503, and serves an in-process app object (``opscore dev``) only
through its experimental embed API. So uvicorn stays, and its protocol gets three guards:

* the request line plus headers may not exceed ``max_header_bytes`` (431);
* they must arrive within ``header_timeout_seconds`` of the connection opening
  or of the request's first byte (408; an idle connection just closes);
* the body must arrive within ``body_timeout_seconds`` of the headers (408).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ops_core.config import Settings, comma_list

log = logging.getLogger(__name__)

# uvicorn's own exit status when the server never started (port taken, lifespan failed).
STARTUP_FAILURE = 3


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and deadlines on each request's head and body."""

    max_head_bytes: ClassVar[int]
    head_timeout: ClassVar[float]
    body_timeout: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes of the current request head seen so far; None while its body is being read.
        self._head_bytes: int | None = 0
        self._heads_done = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        seen = self._head_bytes
        if seen is None:
            super().data_received(data)
            return
        room = self.max_head_bytes - seen
        if len(data) <= room:
            self._head_bytes = seen + len(data)
            super().data_received(data)
            return
        # Feed only what still fits: if the head does not end inside it, the head is too large.
        heads_done = self._heads_done
        self._head_bytes = self.max_head_bytes
        if room > 0:
            super().data_received(data[:room])
        if self._heads_done == heads_done:
            if not self._refused and not self.transport.is_closing():
                self._refuse(431, "Request Header Fields Too Large", "request line and headers too large")
            return
        self.data_received(data[room:])

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.head_timeout, self._head_expired)

    def on_headers_complete(self) -> None:
        self._heads_done += 1
        self._head_bytes = None
        self._arm(self.body_timeout, self._body_expired)
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        # The connection now belongs to the WebSocket protocol; these HTTP deadlines no longer apply.
        self._disarm()
        self._refused = True
        super().handle_websocket_upgrade()

    def on_message_complete(self) -> None:
        self._disarm()
        self._head_bytes = 0
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # The parser may still complain about input cut off by a refusal; the client has its answer.
        if not self._refused:
            self._refused = True
            self._disarm()
            super().send_400_response(msg)

    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(408, "Request Timeout", "request headers not received in time")
        else:
            self.transport.close()

    def _body_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._refuse(408, "Request Timeout", "request body not received in time")
        else:
            self._refused = True
            self.transport.close()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._refused = True
        self._disarm()
        log.warning("%s: %s", _peer(self.client), message)
        body = message.encode("ascii")
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "content-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode("ascii")
        self.transport.write(head + body)
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "client"


def protocol_for(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """A protocol class carrying ``settings``' limits (uvicorn builds one instance per connection)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_head_bytes": settings.max_header_bytes,
            "head_timeout": settings.header_timeout_seconds,
            "body_timeout": settings.body_timeout_seconds,
        },
    )


def server_config(app: Any, settings: Settings, *, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    """The uvicorn configuration for serving ``app`` with ``settings``' limits."""
    proxies = comma_list(settings.forwarded_allow_ips)
    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        http=protocol_for(settings),
        limit_concurrency=settings.max_connections,
        backlog=settings.backlog,
        timeout_keep_alive=settings.keep_alive_seconds,
        # uvicorn trusts 127.0.0.1 (or $FORWARDED_ALLOW_IPS) when given no list; an empty setting trusts no one.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


def serve(app: Any, settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; exit with uvicorn's start-up failure status if it never started."""
    server = uvicorn.Server(server_config(app, settings, host=host, port=port))
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
