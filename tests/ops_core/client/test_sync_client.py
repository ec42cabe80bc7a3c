"""Client (sync) against real servers on loopback: the API itself (a live stream, wait's timeout), and a small
server that answers 429 and 503 with Retry-After, or too slowly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ops_core.api.app import create_app
from ops_core.client import Client, TaskEvent, errors
from ops_core.config import load_settings
from ops_core.db import migrate
from ops_core.lifecycle import TaskStatus
from tests.ops_core.client.conftest import serve
from tests.support.cli import full_task


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("sdk")
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'api.db'}",
        broker_url="memory://",
        auth="disabled",
        stream_poll_seconds=0.1,
    )
    asyncio.run(migrate.upgrade_async(settings))
    with serve(create_app(settings)) as url:
        yield url


def test_a_live_stream_yields_events_as_they_happen_and_ends_at_the_terminal_one(api_url: str) -> None:
    with Client(api_url) as api:
        task = api.submit("say hi")
        got: list[int] = []
        for event in api.stream(task.id):
            assert isinstance(event, TaskEvent)
            got.append(event.seq)
            if event.seq == 1:
                api.cancel(task.id)  # while the stream is open: it sees the change live, then ends

        assert got == [1, 2]
        assert api.wait(task.id, timeout=30).status is TaskStatus.CANCELLED


def test_wait_on_the_stream_gives_up_at_its_timeout(api_url: str) -> None:
    with Client(api_url) as api:
        task = api.submit("nobody runs this")
        started = time.monotonic()
        with pytest.raises(errors.WaitTimeout, match="still pending"):
            api.wait(task.id, timeout=1.0)
        assert time.monotonic() - started >= 1.0


def test_list_and_typed_errors_over_http(api_url: str) -> None:
    with Client(api_url) as api:
        ids = {api.submit(f"page {i}").id for i in range(5)}
        assert ids <= {task.id for task in api.list(page_size=2)}
        with pytest.raises(errors.TaskNotFound):
            api.get("00000000-0000-4000-8000-000000000000")
        with pytest.raises(errors.ValidationError, match="goal"):
            api.submit("")


class Scripted:
    """Answers ``POST /v1/tasks`` from a script; ``GET /v1/tasks/{id}`` takes 5 s."""

    def __init__(self) -> None:
        self.script: list[Response] = []
        self.requests = 0

    async def submit(self, request: Request) -> Response:
        self.requests += 1
        return self.script.pop(0)

    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(5)
        return JSONResponse({})

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/v1/tasks", self.submit, methods=["POST"]), Route("/v1/tasks/{task_id}", self.slow)]
        )


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[Scripted, str]]:
    server = Scripted()
    with serve(server.app()) as url:
        yield server, url


def _error(status: int, code: str, retry_after: str) -> Response:
    body = {"error": {"code": code, "message": f"{code} now"}}
    return JSONResponse(body, status_code=status, headers={"Retry-After": retry_after})


def test_429_and_503_are_sent_again_after_retry_after(scripted: tuple[Scripted, str], tmp_path: Path) -> None:
    server, url = scripted
    server.requests = 0
    server.script = [
        _error(429, "rate_limited", "1"),
        _error(503, "database_unavailable", "1"),
        JSONResponse(full_task("pending"), status_code=202),
    ]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with Client(url, sleep=sleep) as api:
        task = api.submit("say hi")

    assert task.status is TaskStatus.PENDING
    assert server.requests == 3 and slept == [1.0, 1.0]


def test_retries_end_with_the_typed_error(scripted: tuple[Scripted, str]) -> None:
    server, url = scripted
    server.requests = 0
    server.script = [_error(503, "broker_unavailable", "0")] * 3
    with (
        Client(url, max_retries=2, sleep=lambda seconds: None) as api,
        pytest.raises(errors.BrokerUnavailable) as caught,
    ):
        api.submit("x")
    assert server.requests == 3 and caught.value.retry_after == 0.0

    # A wait longer than max_retry_wait (a token budget that renews at midnight) is not waited out.
    server.requests = 0
    server.script = [_error(429, "token_budget_exceeded", "3600")]
    with (
        Client(url, sleep=lambda seconds: pytest.fail("slept")) as api,
        pytest.raises(errors.TokenBudgetExceeded) as spent,
    ):
        api.submit("x")
    assert server.requests == 1 and spent.value.retry_after == 3600.0
    assert isinstance(spent.value, errors.TooManyRequests)


def test_a_slow_answer_is_a_transport_error_after_the_timeout(scripted: tuple[Scripted, str]) -> None:
    _, url = scripted
    with Client(url, timeout=0.5) as api, pytest.raises(errors.TransportError, match="did not answer in time"):
        api.get("00000000-0000-4000-8000-000000000000")


def test_the_environment_names_the_api_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCORE_API_URL", "http://example.test:9000/")
    monkeypatch.setenv("OPSCORE_API_KEY", "ok_secret")
    with Client() as api:
        assert api.base_url == "http://example.test:9000"
        assert api.options.headers()["Authorization"] == "Bearer ok_secret"
    with Client("http://other.test", api_key="") as api:
        assert api.base_url == "http://other.test" and "Authorization" not in api.options.headers()
