"""Errors as gRPC statuses: one mapping for every ops-core error, and the REST API's messages word for word."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from ops_core import errors
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.grpc_api.errors import STATUS_CODES, status_code, trailers
from ops_core.keys import Scope
from ops_core.runtime import Runtime
from tests.ops_core.grpc_api.conftest import Metadata, bearer, new_key
from tests.ops_core.grpc_api.test_service import status_of


def every_error(cls: type[errors.OpsCoreError] = errors.OpsCoreError) -> list[type[errors.OpsCoreError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in every_error(direct))]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
        (errors.Forbidden, grpc.StatusCode.PERMISSION_DENIED),
        (errors.TaskNotFound, grpc.StatusCode.NOT_FOUND),
        (errors.UnknownAgent, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidData, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.TaskFinished, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.IdempotencyConflict, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.DatabaseUnavailable, grpc.StatusCode.UNAVAILABLE),
        (errors.StreamsFull, grpc.StatusCode.UNAVAILABLE),
        (errors.LeaseLost, grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_has_the_code_its_http_status_implies(error: type[errors.OpsCoreError], code: Any) -> None:
    assert status_code(error("x")) == code


def test_every_error_status_has_a_grpc_code() -> None:
    statuses = {cls.status_code for cls in every_error()}
    assert statuses - {500} <= set(STATUS_CODES), "a new HTTP status needs its gRPC code in STATUS_CODES"
    limited = errors.RateLimited("slow down", retry_after=2.5)
    assert status_code(limited) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert trailers(limited) == (("error-code", "rate_limited"), ("retry-after", "3"))


async def rest_and_grpc(rest_response: Any, grpc_call: Any) -> tuple[dict[str, Any], tuple[Any, str, dict[str, str]]]:
    response: httpx.Response = await rest_response
    return response.json()["error"], await status_of(grpc_call)


async def test_errors_carry_the_rest_messages(stub: Any, admin: Metadata, rest: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())
    cases = [
        (rest.get(f"/v1/tasks/{unknown}"), stub.Get(pb.GetTaskRequest(task_id=unknown), metadata=admin)),
        (
            rest.post(f"/v1/tasks/{unknown}/cancel"),
            stub.Cancel(pb.CancelTaskRequest(task_id=unknown), metadata=admin),
        ),
        (
            rest.get(f"/v1/tasks/{unknown}/events"),
            stub.ListEvents(pb.ListTaskEventsRequest(task_id=unknown), metadata=admin),
        ),
        (
            rest.post("/v1/tasks", json={"goal": "x", "agent": "nobody"}),
            stub.Submit(pb.SubmitTaskRequest(goal="x", agent="nobody"), metadata=admin),
        ),
        (
            rest.post("/v1/tasks", json={"goal": "x", "model": "bogus:thing"}),
            stub.Submit(pb.SubmitTaskRequest(goal="x", model="bogus:thing"), metadata=admin),
        ),
        (
            rest.post("/v1/tasks", json={"goal": "x", "callback_url": "http://127.0.0.1:9/hook"}),
            stub.Submit(pb.SubmitTaskRequest(goal="x", callback_url="http://127.0.0.1:9/hook"), metadata=admin),
        ),
        (
            rest.get("/v1/tasks", params={"cursor": "nonsense"}),
            stub.List(pb.ListTasksRequest(cursor="nonsense"), metadata=admin),
        ),
    ]
    for rest_call, grpc_call in cases:
        rest_error, (code, message, trailing) = await rest_and_grpc(rest_call, grpc_call)
        assert message == rest_error["message"]
        assert trailing["error-code"] == rest_error["code"]
        assert code in {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}


async def test_invalid_fields_are_named_as_rest_names_them(stub: Any, admin: Metadata, rest: httpx.AsyncClient) -> None:
    cases = [
        ({"goal": "  "}, pb.SubmitTaskRequest(goal="  ")),
        ({"goal": "x", "priority": 10}, pb.SubmitTaskRequest(goal="x", priority=10)),
        ({"goal": "x", "concurrency_limit": 2}, pb.SubmitTaskRequest(goal="x", concurrency_limit=2)),
        ({"goal": "x", "concurrency_key": "a b"}, pb.SubmitTaskRequest(goal="x", concurrency_key="a b")),
        ({"goal": "x", "timeout_seconds": 0}, pb.SubmitTaskRequest(goal="x", timeout_seconds=0)),
        ({"goal": "bad\x00"}, pb.SubmitTaskRequest(goal="bad\x00")),
    ]
    for body, request in cases:
        rest_error, (code, message, trailing) = await rest_and_grpc(
            rest.post("/v1/tasks", json=body), stub.Submit(request, metadata=admin)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT, body
        assert rest_error["message"].startswith("body field ")
        assert message == "request" + rest_error["message"].removeprefix("body"), body
        assert trailing["error-code"] == rest_error["code"] == "validation_error"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GetTaskRequest(task_id="abc"), "task_id"),
        (pb.ListTasksRequest(status="bogus"), "status"),
        (pb.ListTasksRequest(limit=0), "limit"),
        (pb.ListTasksRequest(limit=501), "limit"),
        (pb.ListTasksRequest(agent=""), "agent"),
        (pb.ListTaskEventsRequest(task_id=str(uuid.uuid4()), after_seq=-1), "after_seq"),
        (pb.ListTaskEventsRequest(task_id=str(uuid.uuid4()), limit=1001), "limit"),
        (pb.WatchTaskRequest(task_id="", after_seq=0), "task_id"),
    ],
)
async def test_bad_arguments_are_invalid_argument(stub: Any, admin: Metadata, request_: Any, field: str) -> None:
    method = {
        pb.GetTaskRequest: stub.Get,
        pb.ListTasksRequest: stub.List,
        pb.ListTaskEventsRequest: stub.ListEvents,
        pb.WatchTaskRequest: lambda r, metadata: stub.WatchTask(r, metadata=metadata).read(),
    }[type(request_)]

    code, message, _ = await status_of(method(request_, metadata=admin))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith(f"request field '{field}': "), message


async def test_a_spent_submission_rate_is_resource_exhausted(stub: Any, runtime: Runtime) -> None:
    await runtime.access.set_quotas("a", {"submissions_per_second": 1.0})
    key = bearer(await new_key(runtime, "a", Scope.TASKS_WRITE))
    await stub.Submit(pb.SubmitTaskRequest(goal="x"), metadata=key)

    code, _, trailing = await status_of(stub.Submit(pb.SubmitTaskRequest(goal="y"), metadata=key))

    assert (code, trailing["error-code"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")
    assert int(trailing["retry-after"]) >= 1


async def test_an_unexpected_error_is_internal_without_details(
    stub: Any, admin: Metadata, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(runtime.store, "get", broken)

    code, message, trailing = await status_of(stub.Get(pb.GetTaskRequest(task_id=str(uuid.uuid4())), metadata=admin))

    assert (code, message, trailing["error-code"]) == (
        grpc.StatusCode.INTERNAL,
        "internal server error",
        "internal_error",
    )
    assert "secret detail" in caplog.text


async def test_hostile_input_is_refused_clearly(stub: Any, admin: Metadata, settings: Any) -> None:
    from ops_core.grpc_api.convert import dict_to_struct

    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(33):  # one level past MAX_JSON_DEPTH (protobuf itself refuses ~50)
        inner["d"] = {}
        inner = inner["d"]
    nan = dict_to_struct({"x": float("nan")})
    huge = pb.SubmitTaskRequest(goal="x" * (settings.max_body_bytes + 1))

    for request, field in (
        (pb.SubmitTaskRequest(goal="x", input=_raw_struct(deep)), "input"),
        (pb.SubmitTaskRequest(goal="x", input=nan), "input"),
    ):
        code, message, _ = await status_of(stub.Submit(request, metadata=admin))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith(f"request field '{field}"), message
    code, _, _ = await status_of(stub.Submit(huge, metadata=admin))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Nothing was stored.
    assert list((await stub.List(pb.ListTasksRequest(), metadata=admin)).items) == []


def _raw_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """A Struct as any client builds it (dict_to_struct would send a too-deep value as JSON text)."""
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand: what a client of any language might send."""

    def varint(n: int) -> bytes:
        out = b""
        while n > 0x7F:
            out += bytes([(n & 0x7F) | 0x80])
            n >>= 7
        return out + bytes([n])

    return varint((number << 3) | 2) + varint(len(payload)) + payload


def _nested_struct(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        inner = _field(1, _field(1, b"d") + _field(2, _field(5, inner)))  # Struct{fields: {"d": Value{struct}}}
    return inner


@pytest.mark.parametrize(
    "body",
    [
        _field(1, b"x") + _field(3, _nested_struct(60)),  # deeper than protobuf decodes
        b"\xff\xff\xff",  # not protobuf at all
        _field(1, b"\xff\xfe"),  # a goal that is not UTF-8
    ],
)
async def test_undecodable_requests_are_invalid_argument_after_the_key(
    channel: grpc.aio.Channel, admin: Metadata, body: bytes
) -> None:
    submit = channel.unary_unary("/opscore.v1.TaskService/Submit")
    watch = channel.unary_stream("/opscore.v1.TaskService/WatchTask")

    for call in (submit(body, metadata=admin), watch(b"\xff\xff\xff", metadata=admin).read()):
        code, message, trailing = await status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message.startswith("request: not a valid opscore.v1.") and trailing["error-code"] == "validation_error"
    code, _, _ = await status_of(submit(body))
    assert code == grpc.StatusCode.UNAUTHENTICATED
