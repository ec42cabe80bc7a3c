"""A local OpenAI-compatible Chat Completions server for the live suite and the benchmarks.

It speaks the real wire format, so workers exercise agentkit's real OpenAI
client. What it does is chosen by directives in the latest user message:

* ``[[delay=S]]``: wait S seconds before answering (a slow model);
* ``[[status=N]]``: answer with HTTP status N and an OpenAI-style error body;
* ``[[stream_stall=S]]``: a streamed answer stops for S seconds half-way (a model still generating);
* ``[[fail_first=K]]``: answer 500 to the first K requests for this goal, then normally;
* ``[[tool_stall=S]]``: a two-step run. Step 1 (no tool result in the conversation yet) answers
  with a ``calculator`` tool call; the first step-2 request (after the tool result) stalls S
  seconds before answering, later ones answer at once. Made for killing a worker mid-step-2.
* ``[[recall=K]]``: answers ``"recalled: <the conversation's K-th user message>"`` (1 is the first),
  or ``"recalled nothing"`` when the conversation has fewer: a model that answers from the
  earlier turns of a session, which only the history sent with the request can tell it.

Otherwise it answers ``"done: <goal>"`` with usage of 10 input and 5 output tokens. A request with
``"stream": true`` gets the same answer as the stream of chunks the real API sends.
``calls[(goal, step)]`` counts the requests per goal and step (step = tool results seen + 1),
so a test can tell whether a resumed run asked for a finished step again.

:meth:`FakeOpenAI.enforce` makes it a provider with a rate limit: above ``rpm`` (with
``burst`` at once, and ``slack`` seconds of tolerance for arrival jitter) it answers 429
with ``Retry-After``, as a real provider does. ``arrivals`` keeps when each request came
(monotonic seconds) and ``rejected`` counts the 429s.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DIRECTIVE = re.compile(r"\[\[(\w+)=([\d.]+)\]\]")


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests = 0
        self._seen: Counter[str] = Counter()
        self.calls: Counter[tuple[str, int]] = Counter()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.arrivals: list[float] = []
        self.rejected = 0
        self._limit: tuple[float, int, float] | None = None
        self._tat = 0.0

    def enforce(self, rpm: float, *, burst: int = 1, slack: float = 0.0) -> None:
        """Answer 429 to requests above ``rpm`` (``burst`` at once) from now on."""
        self._limit = (rpm, burst, slack)
        self._tat = 0.0

    def _over_limit(self, now: float) -> float | None:
        """Seconds until a request would be allowed, if this one is over the limit (a GCRA, as providers keep)."""
        if self._limit is None:
            return None
        rpm, burst, slack = self._limit
        interval = 60 / rpm
        start = max(self._tat, now)
        if start + interval - now > burst * interval + slack:
            return start + interval - burst * interval - now
        self._tat = start + interval
        return None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests += 1
        now = time.monotonic()
        self.arrivals.append(now)
        wait = self._over_limit(now)
        if wait is not None:
            self.rejected += 1
            response = _error(429, "rate_limit_exceeded", "Rate limit reached for requests")
            response.headers["Retry-After"] = f"{max(wait, 0.001):.3f}"
            return response
        text = _last_user_text(body)
        directives = {key: float(value) for key, value in DIRECTIVE.findall(text)}
        self._seen[text] += 1
        if "fail_first" in directives and self._seen[text] <= directives["fail_first"]:
            return _error(500, "server_error", "injected failure")
        if "status" in directives:
            status = int(directives["status"])
            return _error(status, "invalid_request_error", f"injected status {status}")
        if "delay" in directives:
            await asyncio.sleep(directives["delay"])
        step = 1 + sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
        self.calls[(text, step)] += 1
        if "recall" in directives:
            said = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
            wanted = int(directives["recall"])
            recalled = f"recalled: {said[wanted - 1]}" if 0 < wanted <= len(said) else "recalled nothing"
            return _answer(self.requests, body, {"content": recalled}, stall=directives.get("stream_stall", 0.0))
        if "tool_stall" in directives:
            if step == 1:
                return _answer(self.requests, body, {"tool_calls": [_call(self.requests, "calculator", "6 * 7")]})
            if self.calls[(text, step)] == 1:
                await asyncio.sleep(directives["tool_stall"])
        return _answer(
            self.requests, body, {"content": f"done: {text[:200]}"}, stall=directives.get("stream_stall", 0.0)
        )

    def start(self, port: int) -> FakeOpenAI:
        self.port = port
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status_code=status)


def _call(number: int, name: str, expression: str) -> dict[str, Any]:
    arguments = json.dumps({"expression": expression})
    return {"id": f"call_{number}", "type": "function", "function": {"name": name, "arguments": arguments}}


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def _answer(number: int, body: dict[str, Any], message: dict[str, Any], *, stall: float = 0.0) -> Response:
    """The assistant ``message`` as a chat completion, or as its stream of chunks when the request streams
    (``stall``: seconds the stream stops for half-way through the answer)."""
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    head = {"id": f"chatcmpl-{number}", "created": int(time.time()), "model": body.get("model", "fake")}
    if not body.get("stream"):
        choice = {"index": 0, "message": {"role": "assistant", "content": None, **message}, "finish_reason": finish}
        return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": USAGE})
    chunk = {**head, "object": "chat.completion.chunk"}
    deltas: list[dict[str, Any]] = [{"role": "assistant"}]
    content = message.get("content") or ""
    # The answer in a few pieces, as a model streams it.
    deltas += [{"content": content[i : i + 8]} for i in range(0, len(content), 8)]
    deltas += [{"tool_calls": [{"index": n, **call}]} for n, call in enumerate(message.get("tool_calls", []))]
    frames = [{**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    frames.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append({**chunk, "choices": [], "usage": USAGE})
    lines = [f"data: {json.dumps(frame)}\n\n" for frame in frames] + ["data: [DONE]\n\n"]
    if not stall:
        return Response("".join(lines), media_type="text/event-stream")
    half = 1 + len(deltas) // 2

    async def stalling() -> AsyncIterator[str]:
        yield "".join(lines[:half])
        await asyncio.sleep(stall)
        yield "".join(lines[half:])

    return StreamingResponse(stalling(), media_type="text/event-stream")
