"""The synchronous client: :class:`Client`."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import httpx

from ops_core.client import _wire
from ops_core.client.errors import WaitTimeout
from ops_core.client.models import (
    MAX_BATCH,
    BatchItem,
    BatchResult,
    JsonObject,
    StreamEvent,
    Task,
    TaskEvent,
    TaskPage,
    TaskRequest,
    TaskSummary,
    Worker,
)
from ops_core.lifecycle import TaskStatus


class Client:
    """ops-core's REST API from synchronous Python.

    ``base_url`` and ``api_key`` default to ``OPSCORE_API_URL`` and
    ``OPSCORE_API_KEY``, as the ``opscore`` commands read them. A 429 or 503 is
    sent again up to ``max_retries`` times after the ``Retry-After`` the server
    gives (a wait longer than ``max_retry_wait`` is not waited out). Failures
    raise :mod:`ops_core.client.errors`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        stream_give_up: float = _wire.STREAM_GIVE_UP_SECONDS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = _wire.Options.resolve(base_url, api_key, timeout, max_retries, max_retry_wait, stream_give_up)
        self.base_url = self.options.base_url
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.options.headers(), timeout=self.options.timeout, transport=transport
        )
        self._sleep = sleep
        self._clock = clock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- tasks -------------------------------------------------------------------------------------

    def submit(
        self,
        goal: str,
        *,
        agent: str | None = None,
        input: JsonObject | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        priority: int | None = None,
        schedule_to_start_seconds: int | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        callback_url: str | None = None,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        session_id: UUID | str | None = None,
    ) -> Task:
        """Queue a task; with an ``idempotency_key`` used before for the same request, the first task.

        ``run_at`` (timezone-aware) or ``delay_seconds`` hold it until then; ``callback_url`` gets its
        final record, signed, when it ends; ``session_id`` makes it the session's next turn."""
        request = TaskRequest(
            goal=goal,
            agent=agent,
            input=input,
            model=model,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            priority=priority,
            schedule_to_start_seconds=schedule_to_start_seconds,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            callback_url=callback_url,
            run_at=run_at,
            delay_seconds=delay_seconds,
            session_id=session_id,
        )
        return self.submit_request(request)

    def submit_request(self, request: TaskRequest | Mapping[str, Any]) -> Task:
        return _wire.parse(Task, self._send("POST", "/v1/tasks", json=_wire.task_body(request)))

    def submit_many(self, requests: Iterable[TaskRequest | Mapping[str, Any]]) -> BatchResult:
        """Submit many tasks with ``POST /v1/tasks/batch``, up to 1,000 per call; one outcome per task, in order.

        A rejected task (bad agent, rate limit, reused key) does not stop the others: see
        :attr:`BatchResult.rejected_items`.
        """
        bodies = [_wire.task_body(request) for request in requests]
        items: builtins.list[BatchItem] = []
        for start in range(0, len(bodies), MAX_BATCH):
            chunk = bodies[start : start + MAX_BATCH]
            result = _wire.parse(BatchResult, self._send("POST", "/v1/tasks/batch", json={"tasks": chunk}))
            items += [item.model_copy(update={"index": item.index + start}) for item in result.items]
        return BatchResult(
            items=items,
            created=sum(item.outcome == "created" for item in items),
            existing=sum(item.outcome == "existing" for item in items),
            rejected=sum(item.outcome == "rejected" for item in items),
        )

    def get(self, task_id: object) -> Task:
        return _wire.parse(Task, self._send("GET", f"/v1/tasks/{_wire.seg(task_id)}"))

    def list_page(
        self,
        *,
        status: TaskStatus | str | None = None,
        agent: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of the tenant's tasks, newest first."""
        query = _wire.params(status=status, agent=agent, limit=limit, cursor=cursor)
        return _wire.parse(TaskPage, self._send("GET", "/v1/tasks", params=query))

    def pages(
        self, *, status: TaskStatus | str | None = None, agent: str | None = None, page_size: int = 100
    ) -> Iterator[TaskPage]:
        """Every page, following ``next_cursor``; each is fetched when the previous one has been used."""
        cursor: str | None = None
        while True:
            page = self.list_page(status=status, agent=agent, limit=page_size, cursor=cursor)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list(
        self, *, status: TaskStatus | str | None = None, agent: str | None = None, page_size: int = 100
    ) -> Iterator[TaskSummary]:
        """The tenant's tasks, newest first, page by page as they are iterated."""
        for page in self.pages(status=status, agent=agent, page_size=page_size):
            yield from page.items

    def cancel(self, task_id: object) -> Task:
        return _wire.parse(Task, self._send("POST", f"/v1/tasks/{_wire.seg(task_id)}/cancel"))

    def retry(self, task_id: object) -> Task:
        return _wire.parse(Task, self._send("POST", f"/v1/tasks/{_wire.seg(task_id)}/retry"))

    def events(self, task_id: object, *, after_seq: int = 0, limit: int | None = None) -> builtins.list[TaskEvent]:
        """The task's recorded events after ``after_seq``, in order (at most 1,000 a call)."""
        query = _wire.params(after_seq=after_seq, limit=limit)
        body = _wire.json_of(self._send("GET", f"/v1/tasks/{_wire.seg(task_id)}/events", params=query))
        return [_wire.validated(TaskEvent, item) for item in _wire.items(body)]

    def stream(self, task_id: object, *, after_seq: int = 0, deadline: float | None = None) -> Iterator[StreamEvent]:
        """The task's events live from its SSE stream, until its terminal status event (or ``deadline``).

        A dropped connection (API restarted, proxy timeout) is reopened with
        ``Last-Event-ID``: nothing is missed or repeated. ``deadline`` is a
        reading of the client's clock (``time.monotonic`` unless given).
        Live text comes as :class:`LiveEvent` (no seq).
        """
        resume = _wire.Resume(
            str(task_id),
            after_seq,
            base_url=self.base_url,
            give_up=self.options.stream_give_up,
            clock=self._clock,
        )
        connect = self.options.timeout.connect or 10.0
        while deadline is None or self._clock() < deadline:
            failure: httpx.HTTPError | None = None
            try:
                with self._http.stream(
                    "GET", resume.path, headers=resume.headers(), timeout=resume.read_timeout(deadline, connect)
                ) as response:
                    if not response.is_success:
                        response.read()
                    if resume.opened(response):
                        for message in _wire.sse_messages(response.iter_lines()):
                            event = resume.accept(message)
                            if event is None:
                                continue
                            yield event
                            if event.is_terminal:
                                return
            except httpx.TimeoutException:
                pass  # a silent connection, or the deadline's read limit: the loop decides
            except httpx.TransportError as exc:
                failure = exc
            pause = resume.failed(failure, deadline)
            if pause > 0:
                self._sleep(pause)

    def poll_events(self, task_id: object, *, after_seq: int = 0, deadline: float | None = None) -> Iterator[TaskEvent]:
        """The task's events by polling ``/events`` with a backoff, until its terminal status event or ``deadline``."""
        poll = _wire.Poll(after_seq)
        while True:
            page = self.events(task_id, after_seq=poll.seq)
            for event in poll.take(page):
                yield event
                if event.is_terminal:
                    return
            pause = poll.pause(bool(page), deadline, self._clock())
            if pause is None:
                return
            self._sleep(pause)

    def wait(self, task_id: object, timeout: float | None = None, *, poll: bool = False) -> Task:
        """The task once it has ended (completed, failed or cancelled); :class:`WaitTimeout` after ``timeout`` s."""
        deadline = None if timeout is None else self._clock() + timeout
        follow = self.poll_events if poll else self.stream
        for _ in follow(task_id, deadline=deadline):
            pass
        task = self.get(task_id)
        if not task.is_finished:
            raise WaitTimeout(f"task {task.id} is still {task.status} after waiting {timeout or 0:g}s")
        return task

    # ---- the rest --------------------------------------------------------------------------------

    def workers(self) -> builtins.list[Worker]:
        """Live worker processes (needs an admin key)."""
        body = _wire.json_of(self._send("GET", "/v1/workers"))
        return [_wire.validated(Worker, item) for item in _wire.items(body)]

    def agents(self) -> builtins.list[dict[str, Any]]:
        """The agents the deployment serves, local and the tenant's remote ones (``GET /v1/agents``)."""
        return _wire.items(_wire.json_of(self._send("GET", "/v1/agents")))

    def approvals(
        self, *, status: str | None = None, task_id: object | None = None, limit: int | None = None
    ) -> JsonObject:
        query = _wire.params(status=status, task_id=task_id, limit=limit)
        return _wire.json_object(_wire.json_of(self._send("GET", "/v1/approvals", params=query)))

    def decide(
        self,
        task_id: object,
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
        path = f"/v1/tasks/{_wire.seg(task_id)}/approvals/{_wire.seg(call_id)}"
        return _wire.json_object(_wire.json_of(self._send("POST", path, json=body)))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise _wire.transport_error(exc, self.base_url) from None
            wait = _wire.retry_delay(response, attempt, self.options)
            if wait is None:
                return response
            attempt += 1
            self._sleep(wait)
