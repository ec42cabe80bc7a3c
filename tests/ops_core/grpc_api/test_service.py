"""Each TaskService RPC against the REST app's own services: what it answers, and that it agrees with REST."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI

from ops_core.db.models import NewEvent
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.grpc_api.convert import struct_to_dict
from ops_core.grpc_api.server import GrpcServer
from ops_core.live import LiveText
from ops_core.runtime import Runtime
from ops_core.streams import StreamHub
from tests.ops_core.grpc_api.conftest import Metadata
from tests.support.waiting import wait_for


def hub(app: FastAPI) -> StreamHub:
    streams: StreamHub = app.state.streams
    return streams


async def submit(stub: Any, admin: Metadata, **fields: Any) -> pb.Task:
    answer = await stub.Submit(pb.SubmitTaskRequest(goal=fields.pop("goal", "hi"), **fields), metadata=admin)
    task: pb.Task = answer.task
    return task


async def finish(runtime: Runtime, task_id: str) -> None:
    """Claim and complete the task as a worker would: claim, an appended event, completion (5 events in all)."""
    claim = await runtime.store.claim(uuid.UUID(task_id), "w1")
    assert claim is not None
    await runtime.store.append_events(claim.task.id, claim.attempt, [NewEvent("model_request", {"step": 1})])
    await runtime.store.complete(
        claim.task.id,
        claim.attempt,
        result={"answer": 42, "parts": ["a", 1.5, None, True]},
        input_tokens=3,
        output_tokens=4,
        reused_tokens=0,
        events=[NewEvent("final_answer", {"output": "done"})],
    )


async def status_of(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """A failed call's status code, message and trailing metadata."""
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    error = failed.value
    return error.code(), error.details() or "", dict(error.trailing_metadata() or ())


async def test_submit_creates_a_task_with_the_servers_defaults(stub: Any, admin: Metadata) -> None:
    answer = await stub.Submit(
        pb.SubmitTaskRequest(goal="sum", input=_struct({"n": 3, "x": 1.5, "deep": {"l": [1, "b", None, True]}})),
        metadata=admin,
    )

    assert answer.created
    task = answer.task
    assert (task.goal, task.agent, task.status, task.model) == ("sum", "default", "pending", "offline:default")
    assert (task.max_retries, task.timeout_seconds, task.priority) == (2, 120, 0)
    assert not task.HasField("idempotency_key") and not task.HasField("started_at")
    # Whole numbers come back as ints, as from JSON.
    assert struct_to_dict(task.input) == {"n": 3, "x": 1.5, "deep": {"l": [1, "b", None, True]}}
    assert task.created_at.ToDatetime().year >= 2024


async def test_submit_with_an_idempotency_key_answers_the_first_task(stub: Any, admin: Metadata) -> None:
    first = await stub.Submit(pb.SubmitTaskRequest(goal="once", idempotency_key="k1"), metadata=admin)
    again = await stub.Submit(pb.SubmitTaskRequest(goal="once", idempotency_key="k1"), metadata=admin)

    assert first.created and not again.created
    assert again.task.id == first.task.id and again.task.idempotency_key == "k1"
    code, message, trailers = await status_of(
        stub.Submit(pb.SubmitTaskRequest(goal="other", idempotency_key="k1"), metadata=admin)
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert trailers["error-code"] == "idempotency_conflict" and "differs in: goal" in message


async def test_get_answers_the_task_with_its_result(stub: Any, admin: Metadata, runtime: Runtime) -> None:
    task = await submit(stub, admin)
    await finish(runtime, task.id)

    got = await stub.Get(pb.GetTaskRequest(task_id=task.id), metadata=admin)

    assert got.status == "completed" and got.attempts == 1
    assert got.result.struct_value["answer"] == 42
    assert struct_to_dict(got.result.struct_value) == {"answer": 42, "parts": ["a", 1.5, None, True]}
    assert (got.usage.input_tokens, got.usage.output_tokens, got.usage.total_tokens) == (3, 4, 7)
    assert got.HasField("finished_at") and not got.HasField("error")


async def test_list_pages_with_a_cursor_and_filters(stub: Any, admin: Metadata, runtime: Runtime) -> None:
    ids = [(await submit(stub, admin, goal=f"t{i}")).id for i in range(3)]
    await finish(runtime, ids[0])

    first = await stub.List(pb.ListTasksRequest(limit=2), metadata=admin)
    second = await stub.List(pb.ListTasksRequest(limit=2, cursor=first.next_cursor), metadata=admin)
    completed = await stub.List(pb.ListTasksRequest(status="completed"), metadata=admin)
    everything = await stub.List(pb.ListTasksRequest(), metadata=admin)

    assert [t.id for t in first.items] + [t.id for t in second.items] == ids[::-1]
    assert first.next_cursor and not second.next_cursor
    assert [t.id for t in completed.items] == [ids[0]]
    assert len(everything.items) == 3
    # Summaries, as GET /v1/tasks lists them.
    assert not completed.items[0].HasField("result") and not completed.items[0].HasField("input")


async def test_cancel_and_retry(stub: Any, admin: Metadata) -> None:
    task = await submit(stub, admin)

    cancelled = await stub.Cancel(pb.CancelTaskRequest(task_id=task.id), metadata=admin)
    assert cancelled.status == "cancelled"
    code, _, trailers = await status_of(stub.Cancel(pb.CancelTaskRequest(task_id=task.id), metadata=admin))
    assert (code, trailers["error-code"]) == (grpc.StatusCode.FAILED_PRECONDITION, "task_finished")

    retried = await stub.Retry(pb.RetryTaskRequest(task_id=task.id), metadata=admin)
    assert retried.status == "pending" and retried.id == task.id
    code, _, trailers = await status_of(stub.Retry(pb.RetryTaskRequest(task_id=task.id), metadata=admin))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


async def test_list_events_is_the_rest_log(
    stub: Any, admin: Metadata, runtime: Runtime, rest: httpx.AsyncClient
) -> None:
    task = await submit(stub, admin)
    await finish(runtime, task.id)

    listed = await stub.ListEvents(pb.ListTaskEventsRequest(task_id=task.id), metadata=admin)
    after = await stub.ListEvents(pb.ListTaskEventsRequest(task_id=task.id, after_seq=2, limit=2), metadata=admin)

    logged = (await rest.get(f"/v1/tasks/{task.id}/events")).json()["items"]
    assert [(e.seq, e.type, e.attempt, struct_to_dict(e.payload)) for e in listed.items] == [
        (e["seq"], e["type"], e["attempt"], e["payload"]) for e in logged
    ]
    assert [e.seq for e in after.items] == [3, 4]


async def test_watch_sends_the_log_then_ends_and_resumes_after_a_seq(
    stub: Any, admin: Metadata, runtime: Runtime
) -> None:
    task = await submit(stub, admin)
    await finish(runtime, task.id)

    whole = [item async for item in stub.WatchTask(pb.WatchTaskRequest(task_id=task.id), metadata=admin)]
    resumed = [item async for item in stub.WatchTask(pb.WatchTaskRequest(task_id=task.id, after_seq=2), metadata=admin)]
    past_the_end = [
        item async for item in stub.WatchTask(pb.WatchTaskRequest(task_id=task.id, after_seq=99), metadata=admin)
    ]

    assert [item.event.seq for item in whole] == [1, 2, 3, 4, 5]
    assert struct_to_dict(whole[-1].event.payload)["to"] == "completed"
    assert [item.event.seq for item in resumed] == [3, 4, 5]
    assert past_the_end == []


async def test_watch_follows_a_running_task_live_and_lets_go_of_its_watch(
    stub: Any, admin: Metadata, runtime: Runtime, app: FastAPI
) -> None:
    task = await submit(stub, admin)
    received: list[Any] = []

    async def watch() -> None:
        async for item in stub.WatchTask(pb.WatchTaskRequest(task_id=task.id), metadata=admin):
            received.append(item)

    watching = asyncio.create_task(watch())
    await wait_for(_subscribers(app), lambda n: n == 1, timeout=30, what="the watch to start")
    await wait_for(_count(received), lambda n: n == 1, timeout=30, what="the submit event")
    claim = await runtime.store.claim(uuid.UUID(task.id), "w1")
    assert claim is not None
    hub(app)._received(LiveText(task_id=claim.task.id, attempt=1, step=1, text="Hel"))
    await wait_for(_count(received), lambda n: n >= 3, timeout=30, what="the claim and the live text")
    await runtime.store.complete(
        claim.task.id, claim.attempt, result="ok", input_tokens=0, output_tokens=0, reused_tokens=0, events=[]
    )
    await asyncio.wait_for(watching, timeout=30)

    kinds = [item.WhichOneof("item") for item in received]
    assert "live_text" in kinds and kinds[-1] == "event"
    live = received[kinds.index("live_text")].live_text
    assert (live.attempt, live.step, live.text) == (1, 1, "Hel")
    assert struct_to_dict(received[-1].event.payload)["to"] == "completed"
    assert hub(app).subscribers == 0


async def test_a_client_that_goes_away_lets_go_of_its_watch(stub: Any, admin: Metadata, app: FastAPI) -> None:
    task = await submit(stub, admin)
    call = stub.WatchTask(pb.WatchTaskRequest(task_id=task.id), metadata=admin)
    first = await call.read()
    assert first.event.seq == 1
    assert hub(app).subscribers == 1

    call.cancel()

    await wait_for(_subscribers(app), lambda n: n == 0, timeout=30, what="the server to drop the watch")


async def test_streams_beyond_the_bound_are_unavailable(
    stub: Any, admin: Metadata, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub(app), "_max", 1)
    task = await submit(stub, admin)
    first = stub.WatchTask(pb.WatchTaskRequest(task_id=task.id), metadata=admin)
    await first.read()

    code, message, trailers = await status_of(
        stub.WatchTask(pb.WatchTaskRequest(task_id=task.id), metadata=admin).read()
    )

    assert (code, trailers["error-code"]) == (grpc.StatusCode.UNAVAILABLE, "too_many_streams")
    assert "1 streams" in message and trailers["retry-after"] == "5"
    first.cancel()


async def test_health_and_reflection_are_served(server: GrpcServer, channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "opscore.v1.TaskService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    listed = [answer async for answer in answers]
    assert len(listed) == 1
    assert {s.name for s in listed[0].list_services_response.service} >= {
        "opscore.v1.TaskService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def _struct(value: dict[str, Any]) -> Any:
    from ops_core.grpc_api.convert import dict_to_struct

    return dict_to_struct(value)


def _subscribers(app: FastAPI) -> Any:
    async def probe() -> int:
        return hub(app).subscribers

    return probe


def _count(items: list[Any]) -> Any:
    async def probe() -> int:
        return len(items)

    return probe


async def test_health_turns_not_serving_when_the_server_stops(server: GrpcServer, channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="opscore.v1.TaskService"))
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

    stopping = asyncio.create_task(server.stop())
    assert (await asyncio.wait_for(watch.read(), 30)).status == health_pb2.HealthCheckResponse.NOT_SERVING
    await asyncio.wait_for(stopping, 30)


async def test_submit_delays_a_task_and_keeps_its_callback(stub: Any, admin: Metadata) -> None:
    from google.protobuf import timestamp_pb2

    delayed = await submit(stub, admin, delay_seconds=3600, callback_url="http://93.184.216.34/hooks/done")
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(datetime.now(UTC) + timedelta(days=2))
    scheduled = await submit(stub, admin, run_at=at)

    assert delayed.status == "pending" and delayed.callback_url == "http://93.184.216.34/hooks/done"
    wait = delayed.run_after.ToDatetime(tzinfo=UTC) - delayed.created_at.ToDatetime(tzinfo=UTC)
    assert timedelta(minutes=59) < wait <= timedelta(hours=1, seconds=5)
    assert scheduled.run_after.seconds == at.seconds and not scheduled.HasField("callback_url")
    code, message, _ = await status_of(
        stub.Submit(pb.SubmitTaskRequest(goal="x", run_at=at, delay_seconds=5), metadata=admin)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "give run_at or delay_seconds, not both" in message
