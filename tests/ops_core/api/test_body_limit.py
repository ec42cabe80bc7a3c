"""Bodies over ``max_body_bytes`` are refused with 413, declared or streamed, without being buffered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from ops_core.api.body_limit import BodyLimitMiddleware
from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from tests.ops_core.api.conftest import MAX_BODY_BYTES


def task_body(size: int) -> bytes:
    """A valid submission padded to exactly ``size`` bytes."""
    empty = json.dumps({"goal": "x", "input": {"pad": ""}}).encode()
    return json.dumps({"goal": "x", "input": {"pad": "p" * (size - len(empty))}}).encode()


async def chunks(body: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def count_tasks(runtime: Runtime) -> int:
    return len((await runtime.store.list(tenant=EVERY_TENANT, limit=10)).items)


async def test_declared_content_length_over_the_limit_is_413(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await client.post(
        "/v1/tasks", content=task_body(MAX_BODY_BYTES + 1), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert str(MAX_BODY_BYTES) in response.json()["error"]["message"]
    assert await count_tasks(runtime) == 0


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, runtime: Runtime) -> None:
    request = client.build_request(
        "POST",
        "/v1/tasks",
        content=chunks(task_body(MAX_BODY_BYTES + 1)),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"

    response = await client.send(request)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await count_tasks(runtime) == 0


async def test_chunked_body_at_the_limit_is_accepted(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await client.post(
        "/v1/tasks", content=chunks(task_body(MAX_BODY_BYTES)), headers={"content-type": "application/json"}
    )

    assert response.status_code == 202
    assert await count_tasks(runtime) == 1


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/tasks", content=task_body(MAX_BODY_BYTES), headers={"content-type": "application/json"}
    )

    assert response.status_code == 202


async def test_streamed_body_is_not_read_past_the_limit() -> None:
    limit, chunk, total_chunks = 100, 40, 1000
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * chunk, "more_body": pulled < total_chunks}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(HTTPException) as raised:
        await BodyLimitMiddleware(app, max_body_bytes=limit)(scope, receive, send)

    assert raised.value.status_code == 413
    assert pulled == 3  # 120 bytes > 100: the fourth chunk is never pulled
    assert sent == []


async def run_declared(total: int, limit: int, drain: int, chunk: int = 40) -> tuple[int, list[Message]]:
    """Drive the middleware with a declared body of ``total`` bytes; returns (chunks pulled, messages sent)."""
    pulled = 0
    chunks_total = -(-total // chunk)

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * chunk, "more_body": pulled < chunks_total}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not run for a declared over-limit body")

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"%d" % total)]}
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await BodyLimitMiddleware(app, max_body_bytes=limit, max_drain_bytes=drain)(scope, receive, send)
    return pulled, sent


async def test_a_declared_body_within_the_drain_bound_is_read_before_the_413() -> None:
    pulled, sent = await run_declared(total=400, limit=100, drain=1000)

    assert pulled == 10  # all of it, so the client finishes sending and reads the answer
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") not in sent[0]["headers"]


async def test_a_declared_body_over_the_drain_bound_is_refused_unread_and_the_connection_closed() -> None:
    pulled, sent = await run_declared(total=4000, limit=100, drain=1000)

    assert pulled == 0
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]


async def test_a_streamed_body_is_drained_up_to_the_bound_then_refused_with_close() -> None:
    limit, chunk, total_chunks, drain = 100, 40, 1000, 400
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * chunk, "more_body": pulled < total_chunks}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": []}

    async def send(message: Message) -> None:
        raise AssertionError("the middleware itself sends nothing for a streamed body")

    with pytest.raises(HTTPException) as raised:
        await BodyLimitMiddleware(app, max_body_bytes=limit, max_drain_bytes=drain)(scope, receive, send)

    assert raised.value.status_code == 413
    assert pulled == 11  # 440 bytes > the 400-byte drain bound: nothing more is pulled
    assert raised.value.headers == {"connection": "close"}
