"""A small synchronous client for the REST API, used by the ``opscore`` client commands.

Every failure surfaces as :class:`ApiError`: either the server's own
``{"error": {"code", "message"}}`` or a transport problem (connection
refused, timeout) described in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from ops_core.lifecycle import TaskStatus

JsonObject = dict[str, Any]


class ApiError(Exception):
    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code


class WaitTimeout(ApiError):
    def __init__(self, message: str, task: JsonObject) -> None:
        super().__init__(message, code="wait_timeout")
        self.task = task


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

    def wait(
        self,
        task_id: str,
        *,
        timeout: float,
        poll_interval: float = 0.5,
        max_poll_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> JsonObject:
        """Poll until the task is terminal or ``timeout`` seconds have passed."""
        deadline = clock() + timeout
        interval = poll_interval
        while True:
            task = self.get_task(task_id)
            if TaskStatus(task["status"]).is_terminal:
                return task
            remaining = deadline - clock()
            if remaining <= 0:
                raise WaitTimeout(f"task {task_id} is still {task['status']} after waiting {timeout:g}s", task)
            sleep(min(interval, remaining))
            # Back off so that a long task does not cost one request every half second.
            interval = min(interval * 1.5, max_poll_interval)

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
