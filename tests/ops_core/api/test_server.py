"""The HTTP edge, against a real server on loopback: what one client can make the API hold, and for how long.

``opscore api`` runs as a subprocess for the limits it must enforce as shipped;
the server configuration is also run in a thread (``server_config``) with a
small echo app where a test needs a setting the subprocess does not have.
Raw sockets send what no well-behaved client would.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from ops_core.api.server import server_config
from ops_core.config import Settings, load_settings
from tests.support.processes import ManagedProcess, free_port
from tests.support.waiting import wait_for_sync

MAX_HEADER_BYTES = 8192
HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
KEEP_ALIVE = 1
# How long a test waits for the server to act on a limit: the limit plus ample slack for a loaded machine.
DEADLINE = 10.0


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ManagedProcess]]:
    """``opscore api`` with tight limits, as an operator would set them."""
    tmp = tmp_path_factory.mktemp("edge")
    port = free_port()
    env = {
        **os.environ,
        "OPSCORE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'api.db'}",
        "OPSCORE_BROKER_URL": "memory://",
        # These tests are about the HTTP edge (limits, deadlines), which a key would not change.
        "OPSCORE_AUTH": "disabled",
        "OPSCORE_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "OPSCORE_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "OPSCORE_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "OPSCORE_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE),
    }
    api = ManagedProcess("api", ["api", "--host", "127.0.0.1", "--port", str(port)], env, tmp).start()
    try:
        wait_for_sync(lambda: _healthz(port), lambda ok: ok or not api.alive(), timeout=60, what="opscore api")
        assert api.alive(), api.log_tail()
        yield port, api
    finally:
        api.stop()


@pytest.fixture
def api_port(api: tuple[int, ManagedProcess]) -> int:
    return api[0]


def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE, source_address=(source, 0))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes, failing if it has not closed by ``DEADLINE``."""
    deadline = time.monotonic() + DEADLINE
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept the connection open for {DEADLINE}s; received {received[:200]!r}")


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response on a keep-alive connection (the tests' responses all carry content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(head.split()[1]), body


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split()[1])


# --- request head: size and time -------------------------------------------------


def test_a_huge_header_gets_431_and_the_connection_closes(api_port: int) -> None:
    with connect(api_port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * MAX_HEADER_BYTES))

        assert status_of(read_until_closed(sock)) == 431


def test_a_100_mb_header_is_cut_off_without_being_buffered(api: tuple[int, ManagedProcess]) -> None:
    port, process = api
    server = psutil.Process(process.pid)
    rss_before = server.memory_info().rss
    piece, total, sent = b"a" * 65536, 100 * 1_048_576, 0
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # What got through before the reset sat in socket buffers, not in the server.
    assert sent < total / 4
    assert server.memory_info().rss - rss_before < 16 * 1_048_576


def test_a_huge_request_line_gets_431(api_port: int) -> None:
    with connect(api_port) as sock:
        sock.sendall(b"GET /healthz?" + b"q" * (4 * MAX_HEADER_BYTES))

        assert status_of(read_until_closed(sock)) == 431


def test_headers_just_under_the_limit_are_served(api_port: int) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
    pad = MAX_HEADER_BYTES - len(head) - len(b"\r\n\r\n")
    with connect(api_port) as sock:
        # In small pieces, so the size is counted across reads.
        for start in range(0, pad, 1000):
            sock.sendall((head if start == 0 else b"") + b"p" * min(1000, pad - start))
        sock.sendall(b"\r\n\r\n")

        status, body = read_response(sock)

    assert status == 200
    assert json.loads(body) == {"status": "ok"}


def test_a_client_trickling_its_headers_is_cut_off(api_port: int) -> None:
    with connect(api_port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        # One header line per 50 ms (each well inside any per-read timeout) until the server answers or closes.
        while time.monotonic() - started < DEADLINE and not select.select([sock], [], [], 0.05)[0]:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - started
        response = read_until_closed(sock)

    assert HEADER_TIMEOUT * 0.9 <= elapsed < DEADLINE
    assert status_of(response) == 408


def test_an_idle_new_connection_is_closed(api_port: int) -> None:
    with connect(api_port) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
    assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9


def test_a_crowd_of_idle_connections_is_closed_after_the_header_timeout(api_port: int) -> None:
    crowd = [connect(api_port) for _ in range(100)]
    try:
        open_ = set(crowd)
        deadline = time.monotonic() + DEADLINE
        while open_ and time.monotonic() < deadline:
            for sock in select.select(list(open_), [], [], 0.1)[0]:
                assert sock.recv(1) == b""
                open_.discard(sock)
        assert not open_, f"{len(open_)} of {len(crowd)} idle connections still open after {DEADLINE}s"
    finally:
        for sock in crowd:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed(api_port: int) -> None:
    with connect(api_port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200

        assert read_until_closed(sock) == b""


def test_a_client_trickling_its_body_gets_408(api_port: int) -> None:
    with connect(api_port) as sock:
        sock.sendall(
            b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"
        )

        assert status_of(read_until_closed(sock)) == 408


# --- 413 that ordinary clients can read -------------------------------------------


ELEVEN_MB = 11 * 1_048_576


def test_urllib_reads_the_413_for_an_11_mb_body(api_port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/v1/tasks",
        data=b"x" * ELEVEN_MB,
        headers={"content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=DEADLINE)

    assert raised.value.code == 413
    assert json.loads(raised.value.read())["error"]["code"] == "payload_too_large"


def test_http_client_reads_the_413_for_an_11_mb_body_and_keeps_the_connection(api_port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=DEADLINE)
    try:
        connection.request("POST", "/v1/tasks", body=b"x" * ELEVEN_MB, headers={"content-type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "payload_too_large"

        # The body was drained, so the same connection serves the next request.
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


# --- the server configuration in a thread: concurrency and forwarded headers -----


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the client address and scheme the server put in the scope."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({"client": scope["client"][0], "scheme": scope["scheme"]}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(settings: Settings) -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(server_config(echo_app, settings, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_sync(lambda: server.started, bool, timeout=DEADLINE, what="the server to start")
        yield port
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        assert not thread.is_alive()


def edge_settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **overrides)


def get(port: int, headers: bytes = b"", source: str = "127.0.0.1") -> tuple[int, bytes]:
    with connect(port, source) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        return read_response(sock)


def test_connections_over_the_bound_get_503(tmp_path: Path) -> None:
    limit = 4
    with serving(edge_settings(tmp_path, max_connections=limit)) as port:
        idle = [connect(port) for _ in range(limit)]
        try:
            status = wait_for_sync(lambda: get(port)[0], lambda s: s == 503, timeout=DEADLINE, what="a 503")
            assert status == 503
        finally:
            for sock in idle:
                sock.close()
        # Once the idle connections are gone, requests are served again.
        assert wait_for_sync(lambda: get(port)[0], lambda s: s == 200, timeout=DEADLINE, what="a 200") == 200


FORWARDED = b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"


def test_forwarded_headers_are_ignored_by_default_even_from_loopback(tmp_path: Path) -> None:
    with serving(edge_settings(tmp_path)) as port:
        _, body = get(port, FORWARDED)

    assert json.loads(body) == {"client": "127.0.0.1", "scheme": "http"}


def test_forwarded_headers_are_trusted_only_from_a_configured_proxy(tmp_path: Path) -> None:
    with serving(edge_settings(tmp_path, forwarded_allow_ips="127.0.0.2")) as port:
        from_proxy = json.loads(get(port, FORWARDED, source="127.0.0.2")[1])
        from_elsewhere = json.loads(get(port, FORWARDED, source="127.0.0.1")[1])

    assert from_proxy == {"client": "203.0.113.7", "scheme": "https"}
    assert from_elsewhere == {"client": "127.0.0.1", "scheme": "http"}


def test_an_api_started_without_auth_says_so(api: tuple[int, ManagedProcess]) -> None:
    assert "OPSCORE_AUTH=disabled: the API asks no key" in api[1].log_tail()
