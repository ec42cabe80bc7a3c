"""A small remote agent, run as a process of its own by the e2e tests: ``python -m tests.support.remote_agent``.

It is what the README asks of a remote agent, and nothing of ops-core's: it
checks every webhook's signature with the ``standardwebhooks`` package (401
if it does not verify), answers a task with 202 at once, does the work on a
thread, and reports to the callback URLs, signing with the same package.

What it does with a task is steered by markers in the goal:

* (none): two events, then the result ``{"answer": "remote: <goal>"}`` with usage;
* ``[[hang]]``: one event, then heartbeats (empty event callbacks) every
  second until a cancel webhook arrives for the attempt;
* ``[[silent]]``: accepts the task and never calls back;
* ``[[silent-once]]``: silent on attempt 1, normal on later attempts;
* ``[[flaky=N]]``: answers the first N deliveries of the task with 503.

``GET /received`` lists every verified webhook (and ``{"rejected": ...}``
for each that failed verification), for the tests to check what arrived.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class RemoteAgent:
    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.deliveries: dict[str, int] = defaultdict(int)
        self.cancelled: set[tuple[str, int]] = set()

    def post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        raw = json.dumps(body)
        msg_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": self.webhook.sign(msg_id, datetime.now(UTC), raw),
            "content-type": "application/json",
        }
        return httpx.post(url, content=raw, headers=headers, timeout=30)

    def take(self, message: dict[str, Any]) -> int:
        """The status to answer a verified webhook with."""
        with self.lock:
            self.received.append(message)
            if message["type"] == "cancel":
                self.cancelled.add((message["task_id"], message["attempt"]))
                return 200
            self.deliveries[message["task_id"]] += 1
            count = self.deliveries[message["task_id"]]
        flaky = re.search(r"\[\[flaky=(\d+)\]\]", message["goal"])
        if flaky and count <= int(flaky.group(1)):
            return 503
        threading.Thread(target=self.work, args=(message,), daemon=True).start()
        return 202

    def work(self, task: dict[str, Any]) -> None:
        goal, attempt, urls = task["goal"], task["attempt"], task["callbacks"]
        if "[[silent]]" in goal or ("[[silent-once]]" in goal and attempt == 1):
            return
        started = {"type": "progress", "payload": {"note": "started", "goal": goal}}
        self.post(urls["events"], {"attempt": attempt, "events": [started]})
        if "[[hang]]" in goal:
            while (task["task_id"], attempt) not in self.cancelled:
                if self.post(urls["events"], {"attempt": attempt, "events": []}).status_code != 200:
                    return  # the attempt moved on
                time.sleep(1)
            return
        step = {"type": "model_response", "payload": {"step": 1, "text": "thinking remotely"}}
        self.post(urls["events"], {"attempt": attempt, "events": [step]})
        result = {
            "attempt": attempt,
            "status": "completed",
            "result": {"answer": f"remote: {goal}"},
            "usage": {"input_tokens": 11, "output_tokens": 5},
            "events": [{"type": "final_answer", "payload": {"text": f"remote: {goal}"}}],
        }
        self.post(urls["result"], result)


def handler(agent: RemoteAgent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                message = agent.webhook.verify(body, dict(self.headers.items()))
            except WebhookVerificationError as exc:
                with agent.lock:
                    agent.received.append({"rejected": str(exc)})
                self._answer(401, {"error": str(exc)})
                return
            self._answer(agent.take(message), {})

        def do_GET(self) -> None:
            with agent.lock:
                received = list(agent.received)
            self._answer(200, {"items": received})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(RemoteAgent(args.secret)))
    server.serve_forever()


if __name__ == "__main__":
    main()
