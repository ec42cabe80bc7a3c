"""One line per event type, and what the API sent printed as text, never as markup."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ops_core.terminal import EventPrinter, describe
from tests.support.cli import TASK_ID, event


@pytest.mark.parametrize(
    ("item", "line"),
    [
        (
            event(9, "tool_result", step=2, name="fetch", content="timed out", is_error=True, error_kind="timeout"),
            "   9  tool_result        step 2 · fetch ✗ timeout: timed out",
        ),
        (
            event(9, "policy_decision", step=1, name="send_email", verdict="approval_required", reason="sends mail"),
            "   9  policy_decision    step 1 · send_email: approval_required (sends mail)",
        ),
        (
            event(9, "approval_requested", step=1, id="c7", name="send_email", arguments={"to": "a@b.c"}, reason="x"),
            '   9  approval_requested step 1 · send_email(to="a@b.c") needs approval: x'
            f" · opscore approve {TASK_ID} c7",
        ),
        (
            event(9, "approval_decided", step=1, call_id="c7", tool="send_email", decision="denied", decided_by="k1"),
            "   9  approval_decided   step 1 · send_email [c7]: denied by k1",
        ),
        (
            event(9, "resumed", step=3, steps_reused=3, tokens_saved=5120),
            "   9  resumed            after step 3 · 5,120 tokens saved",
        ),
        (
            event(9, "requeued", attempt=1, error_type="worker_lost", message="heartbeat stale"),
            "   9  requeued           worker_lost: heartbeat stale",
        ),
        (event(9, "cancel_requested"), "   9  cancel_requested   the run stops at its next step"),
        (event(9, "something_new", step=1, n=1), '   9  something_new      step 1 · {"step": 1, "n": 1}'),
        (
            event(9, "final_answer", step=1, output={"total": 42}, text=""),
            '   9  final_answer       step 1 · { "total": 42 }',
        ),
    ],
)
def test_each_event_type_reads_as_one_line(item: dict[str, object], line: str) -> None:
    assert describe(item).plain == line


def test_markup_in_api_values_is_printed_as_is() -> None:
    out = io.StringIO()
    printer = EventPrinter(Console(file=out, width=200, markup=False, color_system=None))

    printer.show(event(3, "final_answer", step=1, text="[offline model] [bold]42[/bold]"))

    assert out.getvalue() == "   3  final_answer       step 1 · [offline model] [bold]42[/bold]\n"


def test_a_long_tool_result_is_cut_to_one_line() -> None:
    line = describe(event(4, "tool_result", step=1, name="read", content="line\n" * 500, is_error=False)).plain

    assert "\n" not in line
    assert line.endswith("…")
    assert len(line) < 220
