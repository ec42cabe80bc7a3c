"""The SDK's event sources: SSE framing, reconnects with Last-Event-ID, polling with a backoff (scripted API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ops_core.client import Client, LiveEvent, StreamEvent, TaskEvent
from ops_core.client._wire import STREAM_GIVE_UP_SECONDS, sse_messages
from ops_core.client.errors import StreamLost, TaskNotFound, TransportError, UnexpectedResponse
from tests.support.cli import TASK_ID, FakeClock, error, run_events, sse, status

BASE = "http://api.test"


def client(handler: Any, clock: FakeClock | None = None) -> Client:
    clock = clock or FakeClock()
    return Client(BASE, api_key="", transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock)


def as_json(events: list[StreamEvent]) -> list[dict[str, Any]]:
    return [event.model_dump(mode="json") for event in events]


def test_sse_framing_joins_data_lines_and_skips_comments() -> None:
    raw = [": ping", "", "id: 7", "event: tool_result", "data: {", 'data: "a": 1}', "", "data: no end"]

    (message,) = sse_messages(raw)

    assert (message.id, message.event, "\n".join(message.data)) == ("7", "tool_result", '{\n"a": 1}')


def test_terminal_events_are_status_moves_into_an_end() -> None:
    def terminal(raw: dict[str, Any]) -> bool:
        return TaskEvent.model_validate(raw).is_terminal

    assert terminal(status(9, "running", "failed"))
    assert not terminal(status(9, "running", "waiting"))
    assert not terminal({**status(9, "running", "completed"), "type": "final_answer"})
    assert not LiveEvent(type="delta", payload={"text": "hi"}).is_terminal


class Broken(httpx.SyncByteStream):
    """A stream that sends some events, then loses its connection."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body
        raise httpx.ReadError("connection reset by peer")


def test_a_broken_stream_is_resumed_after_the_last_event_received() -> None:
    events = run_events()
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.headers["last-event-id"])
        asked.append(str(after))
        rest = [e for e in events if e["seq"] > after]
        if after == 0:
            return httpx.Response(200, stream=Broken(sse(rest[:4])))
        return httpx.Response(200, content=sse(rest))

    clock = FakeClock()
    with client(handler, clock) as api:
        got = as_json(list(api.stream(TASK_ID)))

    assert got == events  # each once, in order, through the break
    assert asked == ["0", "4"]
    assert clock.sleeps == [0.5]


def test_a_stream_that_cannot_be_reopened_is_given_up() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(200, content=sse(run_events()[:2]))
        raise httpx.ConnectError("connection refused")

    clock = FakeClock()
    with client(handler, clock) as api, pytest.raises(StreamLost, match="lost the event stream"):
        list(api.stream(TASK_ID))

    assert STREAM_GIVE_UP_SECONDS <= clock.now < STREAM_GIVE_UP_SECONDS + 10
    assert max(clock.sleeps) == 5.0  # backed off to the cap


def test_an_api_that_is_not_there_fails_at_once() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with client(refused) as api, pytest.raises(TransportError, match=f"cannot connect to the ops-core API at {BASE}"):
        list(api.stream(TASK_ID))


def test_a_refused_stream_raises_the_api_error() -> None:
    with (
        client(lambda request: error(404, "task_not_found", "no such task")) as api,
        pytest.raises(TaskNotFound, match="no such task") as caught,
    ):
        list(api.stream(TASK_ID))

    assert (caught.value.status_code, caught.value.code) == (404, "task_not_found")


def test_a_full_api_process_is_asked_again() -> None:
    answers = [error(503, "too_many_streams", "full"), httpx.Response(200, content=sse(run_events()))]
    clock = FakeClock()

    with client(lambda request: answers.pop(0), clock) as api:
        got = list(api.stream(TASK_ID))

    assert got[-1].payload["to"] == "completed"
    assert clock.sleeps == [0.5]


def test_live_text_is_yielded_without_a_seq() -> None:
    body = sse(run_events(), live=["Hel", "lo"])

    with client(lambda request: httpx.Response(200, content=body)) as api:
        got = as_json(list(api.stream(TASK_ID)))

    assert got[:2] == [
        {"seq": None, "type": "delta", "payload": {"text": "Hel"}},
        {"seq": None, "type": "delta", "payload": {"text": "lo"}},
    ]
    assert [e["seq"] for e in got[2:]] == list(range(1, 9))


def test_an_event_that_is_not_json_is_an_api_error() -> None:
    body = b"id: 1\nevent: status\ndata: <html>\n\n"

    with (
        client(lambda request: httpx.Response(200, content=body)) as api,
        pytest.raises(UnexpectedResponse, match="not JSON"),
    ):
        list(api.stream(TASK_ID))


def test_polling_backs_off_while_nothing_happens_and_stops_at_the_end() -> None:
    events = run_events()
    pages = [events[:2], [], [], [], events[2:5], [], events[5:]]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["after_seq"])
        return httpx.Response(200, json={"items": pages.pop(0)})

    clock = FakeClock()
    with client(handler, clock) as api:
        got = as_json(list(api.poll_events(TASK_ID)))

    assert got == events
    assert seen == ["0", "2", "2", "2", "2", "5", "5"]
    assert clock.sleeps == [0.5, 0.75, 1.125, 1.6875, 0.5, 0.75]


def test_polling_stops_at_the_deadline_without_the_end() -> None:
    clock = FakeClock()
    with client(lambda request: httpx.Response(200, json={"items": []}), clock) as api:
        got = list(api.poll_events(TASK_ID, deadline=3.0))

    assert got == []
    assert clock.now == pytest.approx(3.0)


def test_stream_stops_at_the_deadline_without_the_end() -> None:
    clock = FakeClock()
    body = sse(run_events()[:2])
    with client(lambda request: httpx.Response(200, content=body), clock) as api:
        got = list(api.stream(TASK_ID, deadline=3.0))

    assert [e.seq for e in got] == [1, 2]  # the reconnects resume after 2: nothing twice
    assert clock.now == pytest.approx(3.0)
    assert json.dumps(as_json(got))  # plain JSON values, as the CLI prints them
