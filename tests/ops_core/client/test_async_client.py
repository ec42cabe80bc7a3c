"""AsyncClient against the real app (SQLite, in-process broker) over httpx's ASGI transport: typed answers, typed
errors, pagination, batches, and retries on the tenant's real 429 with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from ops_core.client import AsyncClient, BatchResult, LiveEvent, Task, TaskRequest, errors
from ops_core.keys import Scope
from ops_core.lifecycle import TaskStatus
from ops_core.runtime import Runtime

Connect = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture
async def connect(app: FastAPI, runtime: Runtime) -> AsyncIterator[Connect]:
    """``await connect(tenant, *scopes, **client_options)``: an AsyncClient with a new key of that tenant."""
    opened: list[AsyncClient] = []

    async def make(tenant: str = "a", *scopes: Scope, **options: object) -> AsyncClient:
        _, secret = await runtime.access.create_key(
            tenant=tenant, scopes=scopes or [Scope.TASKS_READ, Scope.TASKS_WRITE]
        )
        client = AsyncClient(
            "http://api",
            api_key=secret,
            transport=httpx.ASGITransport(app=app),
            **options,  # type: ignore[arg-type]
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.close()


async def test_submit_takes_every_option_and_answers_a_typed_task(connect: Connect) -> None:
    api = await connect()

    task = await api.submit(
        "say hi",
        agent="default",
        input={"name": "ada"},
        model="offline:default",
        idempotency_key="k-1",
        max_retries=5,
        timeout_seconds=30,
        priority=7,
        schedule_to_start_seconds=600,
        concurrency_key="gpu",
        concurrency_limit=2,
    )

    assert isinstance(task, Task) and isinstance(task.id, UUID)
    assert task.status is TaskStatus.PENDING and not task.is_finished
    assert (task.goal, task.agent, task.model, task.input) == ("say hi", "default", "offline:default", {"name": "ada"})
    assert (task.max_retries, task.timeout_seconds, task.priority) == (5, 30, 7)
    assert (task.schedule_to_start_seconds, task.concurrency_key, task.concurrency_limit) == (600, "gpu", 2)
    assert task.tenant == "a" and task.usage.total_tokens == 0
    assert await api.get(task.id) == task
    again = await api.submit_request(
        TaskRequest(
            goal="say hi",
            input={"name": "ada"},
            idempotency_key="k-1",
            max_retries=5,
            timeout_seconds=30,
            priority=7,
            schedule_to_start_seconds=600,
            concurrency_key="gpu",
            concurrency_limit=2,
        )
    )
    assert again.id == task.id
    with pytest.raises(errors.IdempotencyConflict) as conflict:
        await api.submit("something else", idempotency_key="k-1")
    assert (conflict.value.status_code, conflict.value.code) == (409, "idempotency_conflict")
    assert isinstance(conflict.value, errors.Conflict)


async def test_each_error_code_is_its_own_class(connect: Connect, app: FastAPI) -> None:
    api = await connect()
    reader = await connect("a", Scope.TASKS_READ)

    cases: list[tuple[type[errors.ApiError], Awaitable[object]]] = [
        (errors.TaskNotFound, api.get("00000000-0000-4000-8000-000000000000")),
        (errors.ValidationError, api.get("not-a-uuid")),
        (errors.ValidationError, api.submit("   ")),
        (errors.UnknownAgent, api.submit("x", agent="nobody")),
        (errors.InvalidModel, api.submit("x", model="bogus:model")),
        (errors.Forbidden, reader.submit("x")),
    ]
    for expected, call in cases:
        with pytest.raises(expected) as caught:
            await call
        assert type(caught.value) is expected
        assert caught.value.message
    async with AsyncClient("http://api", api_key="", transport=httpx.ASGITransport(app=app)) as anonymous:
        with pytest.raises(errors.Unauthenticated) as caught_401:
            await anonymous.get("00000000-0000-4000-8000-000000000000")
    assert caught_401.value.status_code == 401


async def test_cancel_retry_events_stream_and_wait(connect: Connect) -> None:
    api = await connect()
    task = await api.submit("x")

    cancelled = await api.cancel(task.id)
    assert cancelled.status is TaskStatus.CANCELLED
    with pytest.raises(errors.TaskFinished):
        await api.cancel(task.id)
    events = await api.events(task.id)
    assert [(e.seq, e.payload["to"]) for e in events] == [(1, "pending"), (2, "cancelled")]
    assert [e.seq for e in await api.events(task.id, after_seq=1)] == [2]
    streamed = [e async for e in api.stream(task.id)]
    assert streamed == events and streamed[-1].is_terminal
    assert (await api.wait(task.id, timeout=30)).status is TaskStatus.CANCELLED

    retried = await api.retry(task.id)
    assert retried.status is TaskStatus.PENDING
    polled = [e async for e in api.poll_events(task.id, after_seq=2, deadline=asyncio.get_running_loop().time())]
    assert [e.payload["to"] for e in polled] == ["pending"]


async def test_wait_gives_up_at_its_timeout(connect: Connect) -> None:
    api = await connect()
    task = await api.submit("nobody runs this")  # no worker here: it stays pending

    with pytest.raises(errors.WaitTimeout, match=r"still pending after waiting 0\.5s") as caught:
        await api.wait(task.id, timeout=0.5, poll=True)
    assert isinstance(caught.value, TimeoutError)


async def test_list_follows_the_cursor_page_by_page(connect: Connect) -> None:
    api = await connect()
    other = await connect("b")
    ids = [(await api.submit(f"task {i}")).id for i in range(7)]
    await other.submit("another tenant's")

    pages = [page async for page in api.pages(page_size=3)]
    listed = [task async for task in api.list(page_size=3)]

    assert [len(page.items) for page in pages] == [3, 3, 1]
    assert pages[-1].next_cursor is None
    assert [task.id for task in listed] == ids[::-1]  # newest first, each once
    assert [task.id async for task in api.list(status="cancelled")] == []
    assert len((await api.list_page(limit=2)).items) == 2


async def test_submit_many_answers_per_task_and_splits_past_a_thousand(connect: Connect) -> None:
    api = await connect()

    result = await api.submit_many(
        [
            TaskRequest(goal="a", idempotency_key="a"),
            {"goal": "b", "agent": "nobody"},
            {"goal": "a", "idempotency_key": "a"},
        ]
    )
    assert isinstance(result, BatchResult)
    assert [item.outcome for item in result.items] == ["created", "rejected", "existing"]
    assert (result.created, result.existing, result.rejected) == (1, 1, 1)
    assert result.rejected_items[0].error is not None and result.rejected_items[0].error.code == "unknown_agent"
    assert [task.goal for task in result.created_tasks] == ["a"]

    many = await api.submit_many({"goal": f"t{i}"} for i in range(1001))
    assert [item.index for item in many.items] == list(range(1001))
    assert many.created == len(many.created_tasks) == 1001


async def test_a_429_is_waited_out_as_retry_after_says(connect: Connect, runtime: Runtime) -> None:
    # One submission per 2 s (burst 1): the second submit, sent at once, is a real 429 with Retry-After.
    await runtime.access.set_quotas("slow", {"submissions_per_second": 0.5})
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    api = await connect("slow", sleep=sleep)
    tasks = [await api.submit(f"t{i}") for i in range(2)]

    assert len({task.id for task in tasks}) == 2
    assert slept and all(seconds in (1.0, 2.0) for seconds in slept)  # the API's Retry-After, in whole seconds
    impatient = await connect("slow", max_retries=0)
    with pytest.raises(errors.RateLimited) as caught:
        await impatient.submit("now")
    assert caught.value.retry_after in (1.0, 2.0) and caught.value.status_code == 429


async def test_live_events_have_no_seq() -> None:
    live = LiveEvent(type="delta", payload={"text": "hi"})
    assert live.seq is None and not live.is_terminal


async def test_a_task_submitted_with_a_session_id_is_the_sessions_turn(connect: Connect, app: FastAPI) -> None:
    api = await connect()
    session = await api._http.post("/v1/sessions", json={"agent": "default"})
    assert session.status_code == 201, session.text
    session_id = UUID(session.json()["id"])

    task = await api.submit("remember the code word kestrel", session_id=session_id)

    assert task.agent == "default"
    assert task.model_dump(mode="json")["session_id"] == str(session_id)
