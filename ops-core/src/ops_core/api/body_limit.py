"""Reject request bodies larger than ``settings.max_body_bytes`` without buffering them.

A declared ``Content-Length`` over the limit is refused before the app runs.
A chunked (or lying) body is counted as it streams through ``receive``; the
moment it crosses the limit the middleware raises an ``HTTPException(413)``
inside the app, which FastAPI re-raises untouched from its body parsing and the
app's error handler renders in the usual ``{"error": …}`` shape.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CODE = "payload_too_large"


def too_large_message(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._reject(send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(status_code=413, detail=too_large_message(limit))
            return message

        return counted_receive

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"error": {"code": CODE, "message": too_large_message(self.max_body_bytes)}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The unread body stays on the socket; the server must not reuse the connection.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


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
