"""The SDK against the real API: the API tests' app (SQLite, in-process broker) and a real server in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from tests.ops_core.api.conftest import admin_key, app, runtime, settings
from tests.support.processes import free_port
from tests.support.waiting import wait_for_sync

__all__ = ["admin_key", "app", "runtime", "serve", "settings"]


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """``app`` on a loopback port, served by uvicorn in a thread, until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="sdk-test-server", daemon=True)
    thread.start()
    try:
        wait_for_sync(lambda: server.started or not thread.is_alive(), bool, timeout=60, what="the test server")
        assert thread.is_alive(), "the test server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
