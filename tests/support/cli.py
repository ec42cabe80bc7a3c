"""The ``opscore`` client commands against a scripted API: an httpx.MockTransport and a clock that only sleeps move.

:class:`TaskScript` plays one task's life: the event pages that ``GET .../events``
(or the SSE stream) answers in turn, and the task ``GET /v1/tasks/{id}`` answers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from ops_core.cli import build_cli

TASK_ID = str(uuid.uuid4())
Handler = Callable[[httpx.Request], httpx.Response]
# Wide enough that no table in these tests wraps: rows can be asserted whole.
WIDE = {"COLUMNS": "200"}


def task(status: str = "pending", **fields: Any) -> dict[str, Any]:
    """A task as the API answers it (every field present: the SDK reads them all)."""
    return full_task(status, **fields)


def full_task(status: str = "completed", **fields: Any) -> dict[str, Any]:
    """A task as ``GET /v1/tasks/{id}`` gives it, every field present."""
    defaults: dict[str, Any] = {
        "id": TASK_ID,
        "goal": "say hi",
        "status": status,
        "error": None,
        "tenant": "default",
        "agent": "default",
        "model": "offline:default",
        "cancel_requested": False,
        "attempts": 1,
        "max_retries": 3,
        "usage": {"input_tokens": 1200, "output_tokens": 34, "total_tokens": 1234, "reused_tokens": 0},
        "priority": 0,
        "idempotency_key": None,
        "timeout_seconds": 3600,
        "schedule_to_start_seconds": None,
        "concurrency_key": None,
        "concurrency_limit": None,
        "worker_id": None,
        "created_at": "2026-11-01T12:00:00Z",
        "started_at": "2026-11-01T12:00:01Z",
        "finished_at": "2026-11-01T12:00:04.500000Z" if status in ("completed", "failed", "cancelled") else None,
        "updated_at": "2026-11-01T12:00:04Z",
        "input": {},
        "result": None,
        "attempt_errors": [],
    }
    return {**defaults, **fields}


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def event(seq: int, type_: str, attempt: int = 1, **payload: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "task_id": TASK_ID,
        "attempt": attempt,
        "type": type_,
        "payload": payload,
        "created_at": "2026-11-01T12:00:00Z",
    }


def status(seq: int, source: str | None, to: str, reason: str = "", attempt: int = 1) -> dict[str, Any]:
    return event(seq, "status", attempt, **{"from": source, "to": to, "reason": reason})


def run_events(final: str = "completed") -> list[dict[str, Any]]:
    """A whole run: created, claimed, a model call that asks for the calculator, its result, the answer, the end."""
    return [
        status(1, None, "pending", "created"),
        status(2, "pending", "running", "claimed"),
        event(
            3, "model_request", step=1, model="offline:default", messages=2, messages_dropped=0, tools=["calculator"]
        ),
        event(
            4,
            "model_response",
            step=1,
            text="",
            tool_calls=[{"id": "c1", "name": "calculator", "arguments": {"expression": "6 * 7"}}],
            finish_reason="tool_calls",
            model="offline:default",
            usage={"input_tokens": 1200, "output_tokens": 34, "total_tokens": 1234, "requests": 1, "estimated": False},
        ),
        event(5, "tool_call", step=1, id="c1", name="calculator", arguments={"expression": "6 * 7"}),
        event(6, "tool_result", step=1, id="c1", name="calculator", arguments={}, content="42", is_error=False),
        event(7, "final_answer", step=2, output="[offline model] 6 * 7 = 42", text="[offline model] 6 * 7 = 42"),
        status(8, "running", final, "finished"),
    ]


def sse(events: Iterable[dict[str, Any]], *, live: Iterable[str] = ()) -> bytes:
    """Events framed as the API's stream frames them (id = seq, event = type), with keep-alives between."""
    out = [": ping\n\n"]
    out += [f"event: delta\ndata: {json.dumps({'text': text})}\n\n" for text in live]
    for item in events:
        out.append(f"id: {item['seq']}\nevent: {item['type']}\ndata: {json.dumps(item)}\n\n")
    return "".join(out).encode()


class FakeClock:
    """Time that passes only when the CLI sleeps, so waits run instantly and deterministically."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


class TaskScript:
    """One task's API: POST creates it; each events request (page or stream) gets the next scripted batch.

    ``GET /v1/tasks/{id}`` answers the status of the last event served, so the
    task ends exactly when its terminal event has been sent.
    """

    def __init__(self, batches: list[list[dict[str, Any]]], **task_fields: Any) -> None:
        self.batches = list(batches)
        self.served: list[dict[str, Any]] = []
        self.task_fields = task_fields

    def state(self) -> str:
        moves = [e["payload"]["to"] for e in self.served if e["type"] == "status"]
        return moves[-1] if moves else "pending"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/tasks":
            return httpx.Response(202, json=full_task("pending", **self.task_fields))
        if path == f"/v1/tasks/{TASK_ID}":
            return httpx.Response(200, json=full_task(self.state(), **self.task_fields))
        if path.endswith(("/events", "/stream")):
            after = int(request.headers.get("last-event-id") or request.url.params.get("after_seq") or 0)
            batch = self.batches.pop(0) if self.batches else []
            batch = [e for e in batch if e["seq"] > after]
            self.served += batch
            if path.endswith("/stream"):
                return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(batch))
            return httpx.Response(200, json={"items": batch})
        return error(404, "not_found", f"no route {path}")


class Cli:
    def __init__(self, handler: Handler, clock: FakeClock | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.clock = clock or FakeClock()

        def recording(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        self.app = build_cli(transport=httpx.MockTransport(recording), sleep=self.clock.sleep, clock=self.clock)

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(self.app, list(args), env={**WIDE, **(env or {})})

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


def lines(text: str) -> list[str]:
    """Output lines without rich's column padding."""
    return [line.rstrip() for line in text.splitlines()]
