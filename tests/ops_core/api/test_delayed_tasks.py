"""Delayed tasks over the API: run_at and delay_seconds are held in the database, never in the broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ops_core.runtime import Runtime
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.relay import Relay
from tests.ops_core.api.test_errors import error_of


def queued(runtime: Runtime) -> int:
    size: int = runtime.broker.queues[runtime.settings.queue_name].qsize()  # StubBroker: an in-process queue
    return size


async def test_a_delayed_task_is_stored_not_published_until_due(client: httpx.AsyncClient, runtime: Runtime) -> None:
    run_at = datetime.now(UTC) + timedelta(days=3)
    response = await client.post("/v1/tasks", json={"goal": "later", "run_at": run_at.isoformat()})

    assert response.status_code == 202, response.text
    task = response.json()
    assert task["status"] == "pending"
    assert datetime.fromisoformat(task["run_after"]) == run_at
    assert queued(runtime) == 0, "a delay of days is no message in the broker"
    stored = await runtime.store.get(uuid.UUID(task["id"]), tenant=EVERY_TENANT)
    assert stored.published_at is None and stored.run_after == run_at

    relay = Relay(runtime.store, runtime.publisher, runtime.settings)
    await relay()
    assert queued(runtime) == 0, "the relay leaves it until due"
    due = await runtime.store.due_for_publish(limit=10, now=run_at + timedelta(seconds=1))
    assert [t.id for t in due] == [stored.id], "and publishes it once due"


async def test_delay_seconds_counts_from_now(client: httpx.AsyncClient, runtime: Runtime) -> None:
    before = datetime.now(UTC)
    task = (await client.post("/v1/tasks", json={"goal": "later", "delay_seconds": 90})).json()

    run_after = datetime.fromisoformat(task["run_after"])
    assert before + timedelta(seconds=90) <= run_after <= datetime.now(UTC) + timedelta(seconds=90)
    assert queued(runtime) == 0


async def test_a_delayed_tasks_start_deadline_counts_from_its_run_at(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=2)
    body = {"goal": "later", "run_at": run_at.isoformat(), "schedule_to_start_seconds": 60}
    task = (await client.post("/v1/tasks", json=body)).json()

    stored = await runtime.store.get(uuid.UUID(task["id"]), tenant=EVERY_TENANT)
    assert stored.start_deadline == run_at + timedelta(seconds=60)
    assert await runtime.store.fail_unstarted(datetime.now(UTC) + timedelta(minutes=5)) == []


@pytest.mark.parametrize("past", [timedelta(seconds=5), timedelta(days=400)])
async def test_a_run_at_in_the_past_runs_at_once(client: httpx.AsyncClient, runtime: Runtime, past: timedelta) -> None:
    body = {"goal": "now", "run_at": (datetime.now(UTC) - past).isoformat()}
    response = await client.post("/v1/tasks", json=body)

    assert response.status_code == 202, response.text
    assert response.json()["run_after"] is None
    assert queued(runtime) == 1


async def test_no_delay_means_run_after_null(client: httpx.AsyncClient, runtime: Runtime) -> None:
    task = (await client.post("/v1/tasks", json={"goal": "now", "delay_seconds": 0})).json()
    assert task["run_after"] is None and queued(runtime) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"run_at": "2030-01-01T00:00:00+00:00", "delay_seconds": 5}, "run_at or delay_seconds, not both"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at"),  # no UTC offset
        ({"run_at": "tomorrow"}, "run_at"),
        ({"run_at": "2999-01-01T00:00:00+00:00"}, "at most 366 days ahead"),
        ({"delay_seconds": 10**9}, "delay_seconds"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"delay_seconds": "NaN"}, "delay_seconds"),
    ],
)
async def test_bad_delays_are_422(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, object], says: str
) -> None:
    response = await client.post("/v1/tasks", json={"goal": "later", **body})

    assert response.status_code == 422, response.text
    assert says in error_of(response)["message"]
    assert (await runtime.store.list(tenant=EVERY_TENANT)).items == []
