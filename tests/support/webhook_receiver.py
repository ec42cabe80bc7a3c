"""A webhook receiver for the live tests: a local HTTP server that refuses each delivery's first attempts
and verifies the next with the ``standardwebhooks`` package, against the secret the test sets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """Answers a delivery's attempts with ``refusals`` in turn (per ``webhook-id``), then 200 once verified."""

    url: str
    refusals: tuple[int, ...]
    secret: str | None = None
    received: list[Received] = field(default_factory=list)
    verified: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            earlier = len([r for r in self.received if r.headers.get("webhook-id") == headers.get("webhook-id")])
            status = self.refusals[earlier] if earlier < len(self.refusals) else 200
            if status == 200:
                assert self.secret is not None
                try:
                    self.verified.append(Webhook(self.secret).verify(body, headers))
                except WebhookVerificationError:
                    status = 401
            self.received.append(Received(headers, body, status))
            return status

    def of(self, webhook_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.headers.get("webhook-id") == webhook_id]


@contextmanager
def serve(path: str, refusals: tuple[int, ...]) -> Iterator[Receiver]:
    """A :class:`Receiver` listening on 127.0.0.1 at ``path`` until the block ends."""
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = holder["receiver"].handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["receiver"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}{path}", refusals=refusals)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()
