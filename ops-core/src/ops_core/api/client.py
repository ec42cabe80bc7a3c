"""A small synchronous client for the REST API, used by the ``opscore`` client commands.

Every failure surfaces as :class:`ApiError`: either the server's own
``{"error": {"code", "message"}}`` or a transport problem (connection
refused, timeout) described in one line.

A task's events can be followed two ways, with one shape: :meth:`ApiClient.stream_events`
reads the Server-Sent Events stream (``/v1/tasks/{id}/stream``, reconnecting with
``Last-Event-ID``) and :meth:`ApiClient.poll_events` polls ``/v1/tasks/{id}/events``
with a backoff. Both yield the events in ``seq`` order, each once, and end after
the terminal status event, or when the deadline passes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from ops_core.lifecycle import TaskStatus

JsonObject = dict[str, Any]
EventSource = Callable[..., Iterator[JsonObject]]

# How long one read of a stream may wait: the server sends a keep-alive comment every
# OPSCORE_STREAM_KEEPALIVE_SECONDS (15 s), so a silent minute means the connection is gone.
STREAM_READ_SECONDS = 60.0
# A stream that keeps failing (API down, connection cut) is given up after this long.
STREAM_GIVE_UP_SECONDS = 30.0


class ApiError(Exception):
    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code


class ApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``api_key``: sent as ``Authorization: Bearer``; the CLI passes ``OPSCORE_API_KEY``."""
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, body: JsonObject) -> JsonObject:
        return self._request("POST", "/v1/tasks", json=body)

    def get_task(self, task_id: str) -> JsonObject:
        return self._request("GET", f"/v1/tasks/{_seg(task_id)}")

    def list_tasks(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JsonObject:
        params = {"status": status, "agent": agent, "limit": limit, "cursor": cursor}
        return self._request("GET", "/v1/tasks", params={k: v for k, v in params.items() if v is not None})

    def cancel(self, task_id: str) -> JsonObject:
        return self._request("POST", f"/v1/tasks/{_seg(task_id)}/cancel")

    def retry(self, task_id: str) -> JsonObject:
        return self._request("POST", f"/v1/tasks/{_seg(task_id)}/retry")

    def events(self, task_id: str, *, after_seq: int = 0, limit: int | None = None) -> JsonObject:
        params: dict[str, int] = {"after_seq": after_seq}
        if limit is not None:
            params["limit"] = limit
        return self._request("GET", f"/v1/tasks/{_seg(task_id)}/events", params=params)

    def workers(self) -> JsonObject:
        return self._request("GET", "/v1/workers")

    def agents(self) -> JsonObject:
        return self._request("GET", "/v1/agents")

    def poll_events(
        self,
        task_id: str,
        *,
        after_seq: int = 0,
        deadline: float | None = None,
        poll_interval: float = 0.5,
        max_poll_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[JsonObject]:
        """The task's events after ``after_seq``, polled until its terminal status event or ``deadline``."""
        seq = after_seq
        interval = poll_interval
        while True:
            page = self.events(task_id, after_seq=seq)["items"]
            for event in page:
                if int(event["seq"]) <= seq:
                    continue
                seq = int(event["seq"])
                yield event
                if is_terminal_event(event):
                    return
            # Back off while nothing happens, so that a long task does not cost a request every half second.
            interval = poll_interval if page else min(interval * 1.5, max_poll_interval)
            if deadline is not None:
                remaining = deadline - clock()
                if remaining <= 0:
                    return
                interval = min(interval, remaining)
            sleep(interval)

    def stream_events(
        self,
        task_id: str,
        *,
        after_seq: int = 0,
        deadline: float | None = None,
        retry_interval: float = 0.5,
        max_retry_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[JsonObject]:
        """The task's events after ``after_seq`` from its SSE stream, until its terminal status event or ``deadline``.

        A stream that breaks (API restarted, proxy timeout) is reopened with
        ``Last-Event-ID``, so nothing is missed or repeated; one that cannot be
        reopened for ``STREAM_GIVE_UP_SECONDS`` raises :class:`ApiError`, and so
        does any refusal (unknown task, bad key). Events the server sends with
        no id (live text, which is never stored) are yielded with ``seq`` None.
        """
        seq = after_seq
        interval = retry_interval
        failing_since: float | None = None
        path = f"/v1/tasks/{_seg(task_id)}/stream"
        while deadline is None or clock() < deadline:
            read = STREAM_READ_SECONDS if deadline is None else min(STREAM_READ_SECONDS, deadline - clock())
            try:
                with self._http.stream(
                    "GET",
                    path,
                    headers={"Accept": "text/event-stream", "Last-Event-ID": str(seq)},
                    timeout=httpx.Timeout(10.0, read=max(read, 0.1)),
                ) as response:
                    if response.status_code != httpx.codes.SERVICE_UNAVAILABLE:
                        if not response.is_success:
                            response.read()
                            raise _error_from(response)
                        for message in sse_messages(response.iter_lines()):
                            event = _stream_event(message)
                            if event["seq"] is not None:
                                if int(event["seq"]) <= seq:
                                    continue  # already yielded (a server that resent it): each event once
                                seq = int(event["seq"])
                                failing_since, interval = None, retry_interval
                            yield event
                            if is_terminal_event(event):
                                return
            except httpx.TimeoutException:
                pass  # a silent connection, or the deadline's read limit: the loop decides
            except httpx.TransportError as exc:
                if failing_since is None and seq == after_seq and isinstance(exc, httpx.ConnectError):
                    raise ApiError(f"cannot connect to the ops-core API at {self.base_url}: {exc}") from None
            failing_since = clock() if failing_since is None else failing_since
            if clock() - failing_since >= STREAM_GIVE_UP_SECONDS:
                raise ApiError(f"lost the event stream of task {task_id} at {self.base_url}; gave up reconnecting")
            pause = interval if deadline is None else min(interval, deadline - clock())
            if pause > 0:
                sleep(pause)
            interval = min(interval * 2, max_retry_interval)

    def approvals(
        self, *, status: str | None = None, task_id: str | None = None, limit: int | None = None
    ) -> JsonObject:
        params = {"status": status, "task_id": task_id, "limit": limit}
        return self._request("GET", "/v1/approvals", params={k: v for k, v in params.items() if v is not None})

    def decide(
        self,
        task_id: str,
        call_id: str,
        *,
        approve: bool,
        reason: str | None = None,
        arguments: JsonObject | None = None,
    ) -> JsonObject:
        body: JsonObject = {"decision": "approve" if approve else "deny"}
        if reason is not None:
            body["reason"] = reason
        if arguments is not None:
            body["arguments"] = arguments
        return self._request("POST", f"/v1/tasks/{_seg(task_id)}/approvals/{_seg(call_id)}", json=body)

    def _request(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ApiError(f"cannot connect to the ops-core API at {self.base_url}: {exc}") from None
        except httpx.TimeoutException:
            raise ApiError(f"the ops-core API at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"request to the ops-core API at {self.base_url} failed: {exc}") from None
        if response.is_success:
            return _json_object(response)
        raise _error_from(response)


def is_terminal_event(event: JsonObject) -> bool:
    """The status event that ends a task's stream: a move into completed, failed or cancelled."""
    if event.get("type") != "status":
        return False
    to = (event.get("payload") or {}).get("to")
    return to in {status.value for status in TaskStatus if status.is_terminal}


@dataclass
class SseMessage:
    event: str = "message"
    id: str | None = None
    data: list[str] = field(default_factory=list)


def sse_messages(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Server-Sent Events framing (the WHATWG rules the client needs): fields up to a blank line."""
    message = SseMessage()
    for line in lines:
        if not line:
            if message.data:
                yield message
            message = SseMessage()
            continue
        if line.startswith(":"):
            continue  # a keep-alive comment
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            message.data.append(value)
        elif name == "event":
            message.event = value
        elif name == "id":
            message.id = value


def _stream_event(message: SseMessage) -> JsonObject:
    data = "\n".join(message.data)
    if message.id is not None:
        try:
            event = json.loads(data)
        except ValueError:
            raise ApiError(f"the event stream sent an event that is not JSON: {data[:200]}") from None
        if isinstance(event, dict) and "seq" in event:
            return event
        raise ApiError(f"the event stream sent an event without a seq: {data[:200]}")
    # No id: an ephemeral event (live text), never stored; it is shown, not resumed from.
    try:
        payload = json.loads(data)
    except ValueError:
        payload = data
    return {"seq": None, "type": message.event, "payload": payload if isinstance(payload, dict) else {"text": payload}}


def _seg(value: str) -> str:
    # An id is one path segment whatever the user typed; the server rejects it if it is not a UUID.
    return quote(value, safe="")


def _json_object(response: httpx.Response) -> JsonObject:
    try:
        body = response.json()
    except ValueError:
        raise ApiError(
            f"the API answered {response.status_code} with a body that is not JSON",
            status_code=response.status_code,
        ) from None
    if not isinstance(body, dict):
        raise ApiError("the API answered with JSON that is not an object", status_code=response.status_code)
    return body


def _error_from(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(str(error["message"]), status_code=response.status_code, code=str(error["code"]))
    except (ValueError, KeyError, TypeError):
        # Not our API's error shape (a proxy, another service on that port): say what came back.
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        return ApiError(
            f"the API answered {response.status_code} {response.reason_phrase}" + (f": {text}" if text else ""),
            status_code=response.status_code,
        )
