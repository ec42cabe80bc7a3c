"""Schedules, live: a per-second cron schedule fires once per tick with two worker pools (two tickers)
running, and a delayed task starts no earlier than its run_at."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.e2e.audit import _dsn
from tests.e2e.stack import TERMINAL, Stack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TICKS = 8


async def scheduled_tasks(stack: Stack, schedule_id: str) -> list[tuple[str, uuid.UUID, datetime]]:
    """(idempotency key, task id, created_at) of every task the schedule created, oldest tick first."""
    conn = await asyncpg.connect(_dsn(stack.deployment.direct_database_url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT idempotency_key, id, created_at FROM tasks WHERE idempotency_key LIKE $1 ORDER BY idempotency_key",
            f"schedule:{schedule_id}:%",
        )
    finally:
        await conn.close()
    return [(r["idempotency_key"], r["id"], r["created_at"]) for r in rows]


def tick_of(key: str) -> datetime:
    """The tick in a key ``schedule:<id>:<YYYY-MM-DDTHH:MM:SSZ>``."""
    return datetime.strptime(key.split(":", 2)[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


async def test_a_per_second_schedule_fires_once_per_tick_with_two_pools(stack: Stack) -> None:
    deployment = stack.deployment
    assert len([w for w in deployment.workers if w.alive()]) == 2, deployment.logs()

    response = await stack.client.post(
        "/v1/schedules",
        json={"cron": "* * * * * *", "timezone": "Europe/Berlin", "template": {"goal": "tick", "input": {"n": 1}}},
    )
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    path = f"/v1/schedules/{schedule['id']}"

    async def shown() -> dict[str, Any]:
        return dict((await stack.client.get(path)).json())

    await wait_for(shown, lambda s: s["fired"] >= TICKS, timeout=60, what=f"{TICKS} ticks fired\n{stack.logs()}")
    paused = (await stack.client.post(f"{path}/pause")).json()
    assert paused["state"] == "paused"
    # A fire holds the schedule's row until it commits, and one after the pause matches no active row:
    # once the pause has answered, nothing more fires.
    final = await shown()
    assert final["fired"] == paused["fired"]

    rows = await scheduled_tasks(stack, schedule["id"])
    keys = [key for key, _, _ in rows]
    ticks = [tick_of(key) for key in keys]
    assert len(rows) == final["fired"] >= TICKS and final["skipped"] == 0, (final, keys)
    # Once per tick: no tick twice, and none left out between the first and the last.
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))], keys
    # Never before its tick.
    assert all(created >= tick for (_, _, created), tick in zip(rows, ticks, strict=True))

    tasks = await wait_for(
        lambda: asyncio.gather(*(stack.task(str(task_id)) for _, task_id, _ in rows)),
        lambda ts: all(t["status"] in TERMINAL for t in ts),
        timeout=60,
        what=f"the scheduled tasks to finish\n{stack.logs()}",
    )
    assert {t["status"] for t in tasks} == {"completed"}, tasks
    assert all(t["attempts"] == 1 and t["input"] == {"n": 1} for t in tasks), tasks

    assert (await stack.client.delete(path)).status_code == 204


async def test_a_delayed_task_starts_no_earlier_than_its_run_at(stack: Stack) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=4)
    task = await stack.submit(goal="later", run_at=run_at.isoformat())
    assert task["status"] == "pending" and datetime.fromisoformat(task["run_after"]) == run_at

    done = await stack.wait_status(task["id"], TERMINAL, timeout=60)

    assert done["status"] == "completed", done
    started = datetime.fromisoformat(done["started_at"])
    assert started >= run_at, (started, run_at)
    # Published by the relay once due: OPSCORE_RELAY_INTERVAL_SECONDS is 1 in this deployment.
    assert started - run_at < timedelta(seconds=15), (started, run_at)


async def scheduled_workflows(stack: Stack, schedule_id: str) -> tuple[list[tuple[str, uuid.UUID]], int]:
    """(idempotency key, workflow id) of every workflow the schedule started, oldest tick first; and the
    ticks still owed a workflow."""
    conn = await asyncpg.connect(_dsn(stack.deployment.direct_database_url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT idempotency_key, id FROM workflows WHERE idempotency_key LIKE $1 ORDER BY idempotency_key",
            f"schedule:{schedule_id}:%",
        )
        owed = await conn.fetchval(
            "SELECT count(*) FROM schedule_pending_ticks WHERE schedule_id = $1", uuid.UUID(schedule_id)
        )
    finally:
        await conn.close()
    return [(r["idempotency_key"], r["id"]) for r in rows], int(owed)


async def test_a_per_second_workflow_schedule_starts_one_workflow_per_tick(stack: Stack) -> None:
    deployment = stack.deployment
    assert len([w for w in deployment.workers if w.alive()]) == 2, deployment.logs()
    template = {
        "kind": "workflow",
        "steps": [
            {"name": "first", "goal": "tick", "input": {"n": 2}},
            {"name": "second", "goal": "after {{steps.first.result}}", "depends_on": ["first"]},
        ],
    }

    response = await stack.client.post("/v1/schedules", json={"cron": "* * * * * *", "template": template})
    assert response.status_code == 201, response.text
    path = f"/v1/schedules/{response.json()['id']}"

    async def shown() -> dict[str, Any]:
        return dict((await stack.client.get(path)).json())

    await wait_for(shown, lambda s: s["fired"] >= TICKS, timeout=60, what=f"{TICKS} ticks fired\n{stack.logs()}")
    assert (await stack.client.post(f"{path}/pause")).json()["state"] == "paused"
    # A tick fired just before the pause may still be starting its workflow: wait until none is owed.
    schedule_id = path.rsplit("/", 1)[1]
    rows, _ = await wait_for(
        lambda: scheduled_workflows(stack, schedule_id),
        lambda found: found[1] == 0,
        timeout=60,
        what=f"no tick owed a workflow\n{stack.logs()}",
    )
    final = await shown()

    keys = [key for key, _ in rows]
    ticks = [tick_of(key) for key in keys]
    assert len(rows) == final["fired"] >= TICKS and final["skipped"] == 0, (final, keys)
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))], keys
    assert final["last_workflow_id"] == str(rows[-1][1]) and final["last_task_id"] is None

    async def workflows() -> list[dict[str, Any]]:
        return [dict((await stack.client.get(f"/v1/workflows/{wid}")).json()) for _, wid in rows]

    done = await wait_for(
        workflows,
        lambda ws: all(w["status"] != "running" for w in ws),
        timeout=90,
        what=f"the scheduled workflows to finish\n{stack.logs()}",
    )
    assert {w["status"] for w in done} == {"completed"}, done
    assert all([s["status"] for s in w["steps"]] == ["completed", "completed"] for w in done), done

    assert (await stack.client.delete(path)).status_code == 204
