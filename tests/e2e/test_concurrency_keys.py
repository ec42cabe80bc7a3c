"""Concurrency keys, live: a key's limit holds across two worker pools on one database and queue."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.stack import TERMINAL, Stack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# The fake model answers after [[delay=S]] seconds (tests/support/fake_openai.py): each run takes a moment.
FAKE_MODEL = "openai:fake"
SLOW = "[[delay=0.5]]"

Span = tuple[datetime, datetime]


def running_spans(events: list[dict[str, Any]]) -> list[Span]:
    """Each attempt's [claimed, left running] from a task's status events (stamped by the database's writers)."""
    spans: list[Span] = []
    started: datetime | None = None
    for event in events:
        if event["type"] != "status":
            continue
        at = datetime.fromisoformat(event["created_at"])
        if event["payload"]["to"] == "running":
            started = at
        elif event["payload"]["from"] == "running":
            assert started is not None, events
            spans.append((started, at))
            started = None
    assert started is None, f"an attempt never left running: {events}"
    return spans


def most_at_once(spans: list[Span]) -> int:
    """The most spans open at one instant; one that ends as another starts does not overlap it."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    return max(itertools.accumulate(step for _, step in edges), default=0)


async def test_a_key_with_limit_one_never_overlaps_across_two_pools(stack: Stack) -> None:
    deployment = stack.deployment
    assert len([w for w in deployment.workers if w.alive()]) == 2, deployment.logs()

    # All at once, so both pools get deliveries of key A together and race to claim them.
    one = [{"goal": f"{SLOW} one {i}", "concurrency_key": "e2e:one", "concurrency_limit": 1} for i in range(8)]
    two = [{"goal": f"{SLOW} two {i}", "concurrency_key": "e2e:two", "concurrency_limit": 2} for i in range(6)]
    submitted = await asyncio.gather(*(stack.submit(model=FAKE_MODEL, **body) for body in [*one, *two]))
    ids = [task["id"] for task in submitted]

    async def statuses() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(stack.task(i) for i in ids)))

    tasks = await wait_for(
        statuses,
        lambda ts: all(t["status"] in TERMINAL for t in ts),
        timeout=120,
        what=f"14 keyed tasks to finish\n{stack.logs()}",
    )
    assert [(t["status"], t["error"]) for t in tasks] == [("completed", None)] * len(ids), tasks

    events = await asyncio.gather(*(stack.events(i) for i in ids))
    # Which pools ran key one: named in the failure message, not asserted (the broker decides whom each
    # delivery goes to).
    claims = [e["payload"].get("worker_id") for task_events in events[: len(one)] for e in task_events]
    pids = {w["id"]: w["pid"] for w in deployment.live_workers()}
    pools = sorted({deployment.pool_of(pids[w]).name for w in claims if w in pids})

    spans = [running_spans(e) for e in events]
    spans_one = [s for task_spans in spans[: len(one)] for s in task_spans]
    spans_two = [s for task_spans in spans[len(one) :] for s in task_spans]
    assert len(spans_one) >= len(one) and len(spans_two) >= len(two)
    assert most_at_once(spans_one) == 1, (pools, sorted(spans_one))
    assert most_at_once(spans_two) <= 2, sorted(spans_two)
    # The keys are separate groups: one key's queue never held the other's back.
    assert most_at_once(spans_one + spans_two) >= 2, sorted(spans_one + spans_two)
