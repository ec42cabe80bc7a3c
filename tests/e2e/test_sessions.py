"""Sessions, live: multi-turn conversations over HTTP, run by two worker processes on one queue.

The fake model's ``[[recall=1]]`` answers with the conversation's first user
message (tests/support/fake_openai.py), so a third turn can only answer right
if the worker sent it the first turn: the history travels through PostgreSQL,
from whichever worker ran turn 1 to whichever runs turn 3.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from tests.e2e.stack import TERMINAL, Stack
from tests.e2e.test_concurrency_keys import most_at_once, running_spans
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FAKE_MODEL = "openai:fake"
SLOW = "[[delay=0.5]]"
WORDS = ["heliotrope", "quartz", "marmalade", "tundra"]


async def new_session(stack: Stack, **metadata: Any) -> dict[str, Any]:
    response = await stack.client.post("/v1/sessions", json={"agent": "default", "metadata": metadata})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def three_turns(stack: Stack, session_id: str, word: str) -> list[str]:
    """Submits the three turns one after another (so their order is defined), without waiting for any."""
    goals = [
        f"{SLOW} Remember this: the code word is {word}.",
        f"{SLOW} Something else entirely: how is the weather?",
        f"{SLOW} [[recall=1]] What was the code word?",
    ]
    ids = []
    for goal in goals:
        task = await stack.submit(goal=goal, model=FAKE_MODEL, session_id=session_id)
        assert task["session_id"] == session_id and task["agent"] == "default"
        ids.append(task["id"])
    return ids


async def test_three_turn_sessions_answer_from_their_first_turn_one_turn_at_a_time(stack: Stack) -> None:
    deployment = stack.deployment
    assert len([w for w in deployment.workers if w.alive()]) == 2, deployment.logs()

    sessions = [await new_session(stack, user=word) for word in WORDS]
    # Every session's three turns are queued at once, so both pools get deliveries of later turns
    # while earlier ones still run, and race to claim them.
    turns = await asyncio.gather(*(three_turns(stack, s["id"], w) for s, w in zip(sessions, WORDS, strict=True)))
    ids = [task_id for session_turns in turns for task_id in session_turns]

    async def statuses() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(stack.task(i) for i in ids)))

    tasks = await wait_for(
        statuses,
        lambda ts: all(t["status"] in TERMINAL for t in ts),
        timeout=120,
        what=f"{len(ids)} session turns to finish\n{stack.logs()}",
    )
    assert [(t["status"], t["error"]) for t in tasks] == [("completed", None)] * len(ids), tasks

    spans_of: dict[str, list[Any]] = {}
    for session, session_turns, word in zip(sessions, turns, WORDS, strict=True):
        first, second, third = [await stack.task(i) for i in session_turns]
        # The third answer holds what only the first turn said, and this session's word, no other's.
        assert third["result"] == f"recalled: {first['goal']}", third
        assert word in third["result"] and not any(w in third["result"] for w in WORDS if w != word)
        assert second["result"].startswith("done:")

        events = await asyncio.gather(*(stack.events(i) for i in session_turns))
        spans = [running_spans(e) for e in events]
        # One at a time, in submission order: each turn started after the one before it finished.
        for earlier, later in itertools.pairwise(spans):
            assert earlier[-1][1] <= later[0][0], (session["id"], spans)
        spans_of[session["id"]] = [s for turn_spans in spans for s in turn_spans]

        detail = (await stack.client.get(f"/v1/sessions/{session['id']}")).json()
        assert [t["task_id"] for t in detail["turns"]] == session_turns
        assert all(t["in_conversation"] for t in detail["turns"]) and detail["turn_count"] == 3

    every_span = [s for spans in spans_of.values() for s in spans]
    # The sessions are separate: one session's queue never held another's back.
    assert most_at_once(every_span) >= 2, sorted(every_span)
    claimed_by = {
        e["payload"]["worker_id"]
        for i in ids
        for e in await stack.events(i)
        if e["type"] == "status" and e["payload"]["to"] == "running"
    }
    assert len(claimed_by) == 2, f"both worker processes ran turns: {claimed_by}"


async def test_a_closed_session_refuses_new_turns_and_keeps_its_own(stack: Stack) -> None:
    session = await new_session(stack)
    (first,) = [await stack.submit(goal="Remember: 7 is my number.", model=FAKE_MODEL, session_id=session["id"])]
    await stack.wait_status(first["id"], {"completed"})
    closed = await stack.client.post(f"/v1/sessions/{session['id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    refused = await stack.client.post(
        "/v1/tasks", json={"goal": "[[recall=1]] my number?", "model": FAKE_MODEL, "session_id": session["id"]}
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_closed", refused.text
    listed = (await stack.client.get("/v1/sessions", params={"status": "closed"})).json()["items"]
    assert session["id"] in [s["id"] for s in listed]
    detail = (await stack.client.get(f"/v1/sessions/{session['id']}")).json()
    assert [t["task_id"] for t in detail["turns"]] == [first["id"]]
