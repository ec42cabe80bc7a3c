"""Reject request bodies larger than ``settings.max_body_bytes`` without buffering them.

A declared ``Content-Length`` over the limit is refused before the app runs.
A chunked (or lying) body is counted as it streams through ``receive``; the
moment it crosses the limit the middleware raises an ``HTTPException(413)``
inside the app, which FastAPI re-raises untouched from its body parsing and the
app's error handler renders in the usual ``{"error": …}`` shape.

Before answering, up to ``max_drain_bytes`` of the refused body are read and
discarded. Clients such as urllib and http.client send the whole body before
reading any response; a server that answers and closes with the body unread
resets the connection, and such a client sees the reset instead of the 413.
A body larger than the drain bound is answered at once with ``connection: close``.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CODE = "payload_too_large"


def too_large_message(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_drain_bytes: int = 0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_drain_bytes = max_drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            drained = declared <= self.max_drain_bytes and await _drain(receive, 0, self.max_drain_bytes)
            await self._reject(send, close=not drained)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes
        drain = self.max_drain_bytes

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    drained = message.get("more_body", False) is False or await _drain(receive, received, drain)
                    headers = None if drained else {"connection": "close"}
                    raise HTTPException(status_code=413, detail=too_large_message(limit), headers=headers)
            return message

        return counted_receive

    async def _reject(self, send: Send, *, close: bool) -> None:
        body = json.dumps({"error": {"code": CODE, "message": too_large_message(self.max_body_bytes)}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:
            # The unread body stays on the socket; the server must not reuse the connection.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive, received: int, budget: int) -> bool:
    """Read and drop the rest of the body; False if the client left or the body outgrew ``budget`` bytes."""
    while received <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return False
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return received <= budget
    return False


def _content_length(scope: Scope) -> int | None:
    # Scanned by hand: building a Headers object per request is measurable on the submit path.
    for name, raw in scope["headers"]:
        if name == b"content-length":
            try:
                return int(raw)
            except ValueError:
                # A malformed header is the server's problem (h11/httptools reject it); count the bytes instead.
                return None
    return None
