"""How the ``opscore`` client commands show things to a person: rich tables, a task's card, event lines.

Only the client commands import this (rich costs a tenth of a second). Every
value that comes from the API is wrapped in :class:`~rich.text.Text`, never
parsed as markup: an answer that says ``[offline model]`` is printed as is.
Off a terminal (a pipe, a file, a test) rich prints no colour; lines are not
wrapped at 80 columns there either, so ``grep`` sees whole rows.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

JsonObject = dict[str, Any]

# Width of output that goes to a pipe or a file when COLUMNS does not say.
PIPE_WIDTH = 200
PREVIEW_CHARS = 160

STATUS_STYLES = {
    "pending": "blue",
    "running": "cyan",
    "waiting": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(
        file=stream, width=PIPE_WIDTH if wide else None, markup=False, highlight=False, emoji=False, soft_wrap=False
    )


def status_text(status: Any) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(str(status), ""))


def tasks_table(items: Iterable[JsonObject]) -> Table:
    table = _table("ID", "STATUS", "AGENT", "MODEL", "TRIES", "TOKENS", "CREATED", "GOAL")
    table.columns[-1].overflow = "ellipsis"
    table.columns[-1].no_wrap = True
    for task in items:
        table.add_row(
            Text(str(task["id"])),
            status_text(task["status"]),
            Text(str(task.get("agent", ""))),
            Text(str(task.get("model", ""))),
            Text(str(task.get("attempts", ""))),
            Text(_tokens((task.get("usage") or {}).get("total_tokens"))),
            Text(_when(task.get("created_at"))),
            Text(_one_line(str(task.get("goal", "")), 80)),
        )
    return table


def task_card(task: JsonObject) -> RenderableType:
    """One task, field by field; the result and each attempt's error below."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    usage = task.get("usage") or {}
    rows: list[tuple[str, Text | None]] = [
        ("id", Text(str(task["id"]))),
        ("status", status_text(task["status"]) + Text(" (cancel requested)" if task.get("cancel_requested") else "")),
        ("agent", Text(str(task.get("agent", "")))),
        ("model", Text(str(task.get("model", "")))),
        ("goal", Text(str(task.get("goal", "")))),
        ("attempts", Text(f"{task.get('attempts', 0)} (retries allowed: {task.get('max_retries', '?')})")),
        ("priority", Text(str(task.get("priority", "")))),
        ("timeout", Text(f"{task['timeout_seconds']}s per attempt") if task.get("timeout_seconds") else None),
        ("key", Text(str(task["idempotency_key"])) if task.get("idempotency_key") else None),
        ("tokens", Text(_usage_line(usage)) if usage else None),
        ("created", Text(_when(task.get("created_at")))),
        ("started", Text(_when(task.get("started_at"))) if task.get("started_at") else None),
        ("finished", Text(_finished(task)) if task.get("finished_at") else None),
        ("worker", Text(str(task["worker_id"])) if task.get("worker_id") else None),
        ("error", _error_text(task["error"]) if task.get("error") else None),
    ]
    for name, value in rows:
        if value is not None:
            grid.add_row(name, value)
    parts: list[RenderableType] = [grid]
    for failed in task.get("attempt_errors") or []:
        line = f"attempt {failed.get('attempt', '?')}: {failed.get('type', '')}: {failed.get('message', '')}"
        parts.append(Text(line, style="red"))
    if task.get("result") is not None:
        parts += [Text("result", style="bold"), Text(_as_text(task["result"]))]
    return Group(*parts)


def workers_table(items: Iterable[JsonObject], now: datetime | None = None) -> Table:
    now = now or datetime.now(UTC)
    table = _table("ID", "HOST", "PID", "RUNS", "HEARTBEAT", "STARTED", "TASKS")
    for worker in items:
        running = worker.get("current_task_ids") or []
        table.add_row(
            Text(str(worker["id"])),
            Text(str(worker.get("host", ""))),
            Text(str(worker.get("pid", ""))),
            Text(f"{len(running)}/{worker.get('concurrency', '?')}"),
            Text(_ago(worker.get("last_heartbeat"), now)),
            Text(_when(worker.get("started_at"))),
            Text("\n".join(str(task_id) for task_id in running)),
        )
    return table


def agents_table(items: Iterable[JsonObject]) -> Table:
    table = _table("NAME", "KIND", "MODEL", "TOOLS", "DESCRIPTION")
    for agent in items:
        table.add_row(
            Text(str(agent["name"]), style="bold"),
            Text(str(agent.get("kind") or "local")),
            Text(str(agent.get("model") or "")),
            Text(", ".join([*(agent.get("tools") or []), *(f"mcp:{s}" for s in agent.get("mcp_servers") or [])])),
            Text(str(agent.get("description") or "")),
        )
    return table


class EventPrinter:
    """Prints a task's events one line each as they come; live text (no seq) flows inline."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._attempt: int | None = None
        self._live = False

    def show(self, event: JsonObject) -> None:
        if event.get("seq") is None:
            text = _live_text(event)
            if text:
                self.console.print(Text(text, style="dim"), end="")
                self._live = True
            return
        if self._live:
            self.console.print()
            self._live = False
        attempt = event.get("attempt")
        # The created event belongs to attempt 0; a rule marks the second attempt and later ones.
        if isinstance(attempt, int) and self._attempt is not None and attempt != self._attempt and attempt > 1:
            self.console.print(Text(f"── attempt {attempt} ──", style="bold"))
        if isinstance(attempt, int):
            self._attempt = attempt
        # soft_wrap: the terminal folds a long line; a pipe or file gets it whole.
        self.console.print(describe(event), soft_wrap=True)

    def finish(self, task: JsonObject) -> None:
        """The closing lines: how the task ended, what it cost, and its answer or error."""
        if self._live:
            self.console.print()
            self._live = False
        line = status_text(task["status"]) + Text(f" · {task.get('attempts', 0)} attempt(s)")
        usage = task.get("usage") or {}
        if usage:
            line += Text(f" · {_usage_line(usage)}")
        if task.get("finished_at"):
            line += Text(f" · {_finished(task)}")
        self.console.print(line)
        if task.get("error"):
            self.console.print(_error_text(task["error"]))
        elif task.get("result") is not None:
            self.console.print(Text(_as_text(task["result"])))


def describe(event: JsonObject) -> Text:
    """One event as one line: its seq, its type, and what happened."""
    kind = str(event.get("type", "?"))
    payload = event.get("payload") or {}
    line = Text(f"{event.get('seq', ''):>4}  ", style="dim") + Text(f"{kind:<18} ", style=_KIND_STYLES.get(kind, ""))
    step = payload.get("step")
    if isinstance(step, int) and step > 0 and kind not in ("status", "resumed"):
        line += Text(f"step {step} · ", style="dim")
    return line + _detail(kind, payload, event)


_KIND_STYLES = {
    "status": "bold",
    "model_response": "cyan",
    "tool_call": "magenta",
    "tool_result": "magenta",
    "final_answer": "green",
    "error": "red",
    "attempt_failed": "red",
    "approval_requested": "yellow",
    "approval_decided": "yellow",
}


def _detail(kind: str, p: JsonObject, event: JsonObject) -> Text:
    if kind == "status":
        move = Text(f"{p['from']} → " if p.get("from") else "→ ") + status_text(p.get("to", "?"))
        return move + Text(f" ({p['reason']})" if p.get("reason") else "", style="dim")
    if kind == "model_request":
        dropped = f", {p['messages_dropped']} dropped" if p.get("messages_dropped") else ""
        return Text(f"{p.get('model', '')} · {p.get('messages', '?')} messages{dropped}")
    if kind == "model_response":
        parts = [str(p.get("model", "")), _usage_short(p.get("usage") or {})]
        calls = [str(c.get("name", "?")) for c in p.get("tool_calls") or [] if isinstance(c, dict)]
        if calls:
            parts.append("calls " + ", ".join(calls))
        if p.get("finish_reason"):
            parts.append(f"finish {p['finish_reason']}")
        text = _one_line(str(p.get("text") or ""), PREVIEW_CHARS // 2)
        return Text(" · ".join(x for x in parts if x)) + (Text(f" · {text}", style="dim") if text else Text())
    if kind == "tool_call":
        return Text(f"{p.get('name', '?')}({_args(p.get('arguments'))})")
    if kind == "tool_result":
        content = _one_line(_as_text(p.get("content", "")), PREVIEW_CHARS)
        if p.get("is_error"):
            return Text(f"{p.get('name', '?')} ✗ {p.get('error_kind') or 'error'}: {content}", style="red")
        return Text(f"{p.get('name', '?')} → {content}")
    if kind == "policy_decision":
        reason = f" ({p['reason']})" if p.get("reason") else ""
        return Text(f"{p.get('name', '?')}: {p.get('verdict', '?')}{reason}")
    if kind == "approval_requested":
        hint = f" · opscore approve {event.get('task_id', 'ID')} {p.get('id', 'CALL_ID')}"
        reason = f" needs approval: {p['reason']}" if p.get("reason") else " needs approval"
        return Text(f"{p.get('name', '?')}({_args(p.get('arguments'))}){reason}") + Text(hint, style="dim")
    if kind == "approval_decided":
        by = f" by {p['decided_by']}" if p.get("decided_by") else ""
        reason = f" ({p['reason']})" if p.get("reason") else ""
        return Text(f"{p.get('tool', '?')} [{p.get('call_id', '')}]: {p.get('decision', '?')}{by}{reason}")
    if kind == "final_answer":
        return Text(_one_line(str(p.get("text") or _as_text(p.get("output"))), PREVIEW_CHARS))
    if kind in ("error", "attempt_failed", "requeued"):
        what = p.get("type") or p.get("kind") or p.get("error_type") or "error"
        retry = f" · retry in {p['retry_in_seconds']:g}s" if isinstance(p.get("retry_in_seconds"), int | float) else ""
        return Text(f"{what}: {_one_line(str(p.get('message', '')), PREVIEW_CHARS)}{retry}", style="red")
    if kind == "resumed":
        return Text(f"after step {p.get('steps_reused', '?')} · {_tokens(p.get('tokens_saved'))} tokens saved")
    if kind == "cancel_requested":
        return Text("the run stops at its next step")
    return Text(_one_line(json.dumps(p, ensure_ascii=False, default=str), PREVIEW_CHARS), style="dim")


def _table(*headers: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header)
    return table


def _live_text(event: JsonObject) -> str:
    payload = event.get("payload") or {}
    for key in ("text", "delta"):
        if isinstance(payload.get(key), str):
            return str(payload[key])
    return ""


def _error_text(error: JsonObject) -> Text:
    return Text(f"{error.get('type', 'error')}: {error.get('message', '')}", style="red")


def _usage_line(usage: JsonObject) -> str:
    line = (
        f"{_tokens(usage.get('total_tokens'))} tokens"
        f" (in {_tokens(usage.get('input_tokens'))} / out {_tokens(usage.get('output_tokens'))})"
    )
    return line + (f", {_tokens(usage['reused_tokens'])} cached" if usage.get("reused_tokens") else "")


def _usage_short(usage: JsonObject) -> str:
    if not usage:
        return ""
    estimated = " (estimated)" if usage.get("estimated") else ""
    return f"{_tokens(usage.get('input_tokens'))} in / {_tokens(usage.get('output_tokens'))} out tokens{estimated}"


def _tokens(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _args(arguments: Any) -> str:
    if isinstance(arguments, dict):
        text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in arguments.items())
    else:
        text = json.dumps(arguments, ensure_ascii=False, default=str)
    return _one_line(text, PREVIEW_CHARS)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _when(value: Any) -> str:
    moment = _parse(value)
    if moment is None:
        return "-" if value is None else str(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _finished(task: JsonObject) -> str:
    finished, started = _parse(task.get("finished_at")), _parse(task.get("started_at"))
    took = f" (ran {(finished - started).total_seconds():.1f}s)" if finished and started else ""
    return _when(task.get("finished_at")) + took


def _ago(value: Any, now: datetime) -> str:
    moment = _parse(value)
    if moment is None:
        return "-"
    return f"{max((now - moment).total_seconds(), 0.0):.0f}s ago"
