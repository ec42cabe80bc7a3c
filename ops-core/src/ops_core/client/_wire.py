"""What the sync and async clients share: requests as data, answers into models or typed errors, SSE framing,
the retry decision for 429/503, and a stream's resume bookkeeping. No I/O here."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from ops_core.client.errors import ApiError, StreamLost, TransportError, UnexpectedResponse, error_for
from ops_core.client.models import JsonObject, LiveEvent, StreamEvent, TaskEvent, TaskRequest

Model = TypeVar("Model", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
# Statuses that mean "not now": the request was refused before it did anything, so it is safe to repeat.
RETRIED_STATUSES = frozenset({429, 503})
# How long one read of a stream may wait: the server sends a keep-alive comment every
# OPSCORE_STREAM_KEEPALIVE_SECONDS (15 s), so a silent minute means the connection is gone.
STREAM_READ_SECONDS = 60.0
# A stream that keeps failing (API down, connection cut) is given up after this long.
STREAM_GIVE_UP_SECONDS = 30.0


@dataclass(frozen=True)
class Options:
    """How a client talks to the API; the same for :class:`Client` and :class:`AsyncClient`."""

    base_url: str
    api_key: str | None
    timeout: httpx.Timeout
    max_retries: int
    max_retry_wait: float
    stream_give_up: float

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        max_retry_wait: float,
        stream_give_up: float,
    ) -> Options:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        url = base_url or os.environ.get("OPSCORE_API_URL") or DEFAULT_URL
        key = api_key if api_key is not None else os.environ.get("OPSCORE_API_KEY") or None
        return cls(
            base_url=url.rstrip("/"),
            api_key=key,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            stream_give_up=stream_give_up,
        )

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "ops-core-sdk"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def seg(value: object) -> str:
    # An id is one path segment whatever the caller passed; the server rejects it if it is not a UUID.
    return quote(str(value), safe="")


def params(**values: object) -> dict[str, str]:
    return {name: str(value) for name, value in values.items() if value is not None}


def task_body(request: TaskRequest | Mapping[str, Any]) -> JsonObject:
    """A task's JSON body; a mapping goes as it is, for the server to check (a batch answers per item)."""
    if isinstance(request, TaskRequest):
        return request.body()
    return dict(request)


def retry_delay(response: httpx.Response, attempt: int, options: Options) -> float | None:
    """Seconds to wait before sending again, or None to raise: 429 and 503 only, as ``Retry-After`` says.

    A wait longer than ``max_retry_wait`` (a daily token budget renews at midnight) is not waited out.
    """
    if response.status_code not in RETRIED_STATUSES or attempt >= options.max_retries:
        return None
    wait = retry_after(response)
    if wait is None:
        wait = min(0.5 * 2**attempt, options.max_retry_wait)
    return wait if wait <= options.max_retry_wait else None


def retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None  # an HTTP date: the API never sends one


def transport_error(exc: httpx.HTTPError, base_url: str) -> ApiError:
    if isinstance(exc, httpx.ConnectError):
        return TransportError(f"cannot connect to the ops-core API at {base_url}: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"the ops-core API at {base_url} did not answer in time")
    return TransportError(f"request to the ops-core API at {base_url} failed: {exc}")


def json_of(response: httpx.Response) -> Any:
    """The body of a successful answer; a failed one raises its typed error."""
    if not response.is_success:
        raise error_from(response)
    try:
        return response.json()
    except ValueError:
        raise UnexpectedResponse(
            f"the API answered {response.status_code} with a body that is not JSON", status_code=response.status_code
        ) from None


def parse(model: type[Model], response: httpx.Response) -> Model:
    return validated(model, json_of(response), response.status_code)


def validated(model: type[Model], body: Any, status_code: int | None = None) -> Model:
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        raise UnexpectedResponse(
            f"the API answered with a {model.__name__} this SDK cannot read: {exc.errors()[0]['msg']}"
            f" at {'.'.join(str(p) for p in exc.errors()[0]['loc'])}",
            status_code=status_code,
        ) from None


def error_from(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        # Not our API's error shape (a proxy, another service on that port): say what came back.
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        message = f"the API answered {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")
        return error_for(response.status_code, None, message, retry_after(response))
    return error_for(response.status_code, code, message, retry_after(response))


@dataclass
class SseMessage:
    event: str = "message"
    id: str | None = None
    data: list[str] = field(default_factory=list)


class SseParser:
    """Server-Sent Events framing (the WHATWG rules the client needs): fields up to a blank line.

    A message cut off before its blank line (the connection dropped) is never completed.
    """

    def __init__(self) -> None:
        self._message = SseMessage()

    def feed(self, line: str) -> SseMessage | None:
        """The message this line completes, if any."""
        if not line:
            done, self._message = self._message, SseMessage()
            return done if done.data else None
        if line.startswith(":"):
            return None  # a keep-alive comment
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._message.data.append(value)
        elif name == "event":
            self._message.event = value
        elif name == "id":
            self._message.id = value
        return None


def sse_messages(lines: Iterable[str]) -> Iterator[SseMessage]:
    parser = SseParser()
    for line in lines:
        if (message := parser.feed(line)) is not None:
            yield message


async def async_sse_messages(lines: AsyncIterable[str]) -> AsyncIterator[SseMessage]:
    parser = SseParser()
    async for line in lines:
        if (message := parser.feed(line)) is not None:
            yield message


def stream_event(message: SseMessage) -> StreamEvent:
    data = "\n".join(message.data)
    if message.id is not None:
        try:
            body = json.loads(data)
        except ValueError:
            raise UnexpectedResponse(f"the event stream sent an event that is not JSON: {data[:200]}") from None
        return validated(TaskEvent, body)
    # No id: an ephemeral event (live text), never stored; it is shown, not resumed from.
    try:
        payload = json.loads(data)
    except ValueError:
        payload = data
    return LiveEvent(type=message.event, payload=payload if isinstance(payload, dict) else {"text": payload})


class Resume:
    """A task stream's bookkeeping across connections: the last seq received, and when to give up.

    Events at or below the last seq are dropped (each once); a run of failures
    longer than ``give_up`` seconds with no event received raises :class:`StreamLost`.
    """

    def __init__(
        self,
        task_id: str,
        after_seq: int,
        *,
        base_url: str,
        give_up: float,
        clock: Callable[[], float],
        retry_interval: float = 0.5,
        max_retry_interval: float = 5.0,
    ) -> None:
        self.task_id = task_id
        self.first_seq = after_seq
        self.seq = after_seq
        self._base_url = base_url
        self._give_up = give_up
        self._clock = clock
        self._retry_interval = retry_interval
        self._max_retry_interval = max_retry_interval
        self._interval = retry_interval
        self._failing_since: float | None = None
        self.path = f"/v1/tasks/{seg(task_id)}/stream"

    def headers(self) -> dict[str, str]:
        return {"Accept": "text/event-stream", "Last-Event-ID": str(self.seq)}

    def read_timeout(self, deadline: float | None, connect: float) -> httpx.Timeout:
        read = STREAM_READ_SECONDS if deadline is None else min(STREAM_READ_SECONDS, deadline - self._clock())
        return httpx.Timeout(connect, read=max(read, 0.1))

    def accept(self, message: SseMessage) -> StreamEvent | None:
        """The event to yield, or None for one already yielded."""
        event = stream_event(message)
        if isinstance(event, TaskEvent):
            if event.seq <= self.seq:
                return None  # already yielded (a server that resent it): each event once
            self.seq = event.seq
            self._failing_since, self._interval = None, self._retry_interval
        return event

    def opened(self, response: httpx.Response) -> bool:
        """Whether to read this answer as the stream; 503 (too many streams, starting up) is tried again."""
        if response.status_code == httpx.codes.SERVICE_UNAVAILABLE:
            return False
        if not response.is_success:
            raise error_from(response)
        return True

    def failed(self, exc: httpx.HTTPError | None, deadline: float | None) -> float:
        """After a broken or refused connection: the pause before reopening, or raise."""
        if (
            isinstance(exc, httpx.ConnectError)
            and self._failing_since is None
            and self.seq == self.first_seq
            and self._give_up > 0
        ):
            raise transport_error(exc, self._base_url)  # never connected: a wrong URL, not a restart
        now = self._clock()
        self._failing_since = now if self._failing_since is None else self._failing_since
        if now - self._failing_since >= self._give_up:
            raise StreamLost(f"lost the event stream of task {self.task_id} at {self._base_url}; gave up reconnecting")
        pause = self._interval if deadline is None else min(self._interval, deadline - now)
        self._interval = min(self._interval * 2, self._max_retry_interval)
        return max(pause, 0.0)


class Poll:
    """Polling ``/events`` with a backoff while nothing happens (the same shape as a stream)."""

    def __init__(self, after_seq: int, *, interval: float = 0.5, max_interval: float = 5.0) -> None:
        self.seq = after_seq
        self._base = interval
        self._max = max_interval
        self._interval = interval

    def take(self, page: list[TaskEvent]) -> Iterator[TaskEvent]:
        for event in page:
            if event.seq > self.seq:
                self.seq = event.seq
                yield event

    def pause(self, got_any: bool, deadline: float | None, now: float) -> float | None:
        """Seconds to sleep before the next poll, or None when the deadline has passed."""
        # Back off while nothing happens, so that a long task does not cost a request every half second.
        self._interval = self._base if got_any else min(self._interval * 1.5, self._max)
        if deadline is None:
            return self._interval
        remaining = deadline - now
        return None if remaining <= 0 else min(self._interval, remaining)


def items(body: Any) -> list[Any]:
    found = body.get("items") if isinstance(body, dict) else None
    if not isinstance(found, list):
        raise UnexpectedResponse("the API answered without a list of items")
    return found


def json_object(body: Any) -> JsonObject:
    if not isinstance(body, dict):
        raise UnexpectedResponse("the API answered with JSON that is not an object")
    return body
