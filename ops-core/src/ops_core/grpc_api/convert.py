"""Rows into messages and requests into the REST API's request models: the seam between protobuf and ops-core.

Tasks are shown through the REST API's public models (``TaskPublic``,
``TaskSummary``), so what a client sees of a task is decided once. A request
is validated by the same pydantic model as its REST counterpart, so the same
input is refused with the same message, whichever way it came.

JSON travels as ``google.protobuf.Struct``/``Value``, whose numbers are
doubles: a whole number within a double's exact range arrives as an int
again, as it would from JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from google.protobuf import struct_pb2, timestamp_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ops_core.api.problems import describe_validation_errors
from ops_core.api.schemas import TaskPublic, TaskSummary
from ops_core.api.storable import StorableText
from ops_core.db.engine import json_dumps
from ops_core.db.models import Task, TaskEvent
from ops_core.errors import InvalidFields
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.lifecycle import TaskStatus
from ops_core.live import LiveText

# The largest integer a double holds exactly: beyond it a number stays a float.
EXACT_INTEGER = 2**53
# Protobuf parsers stop at 100 levels of nesting, and each JSON level costs two or three (Value, Struct,
# a map entry): measured, a payload 34 objects deep no longer decodes. A task's result or an event's
# payload (an agent's output, not bounded like input, whose limit is the same 32) nested deeper is
# sent as its JSON text rather than as a message no client could decode, or the server build.
MAX_JSON_LEVELS = 32
MAX_PAGE = 500  # as GET /v1/tasks
MAX_EVENTS = 1000  # as GET /v1/tasks/{id}/events

M = TypeVar("M", bound=BaseModel)

_SUBMIT_OPTIONAL = (
    "agent",
    "model",
    "idempotency_key",
    "max_retries",
    "timeout_seconds",
    "priority",
    "schedule_to_start_seconds",
    "concurrency_key",
    "concurrency_limit",
    "callback_url",
    "delay_seconds",
)


class ListQuery(BaseModel):
    """List's arguments, with the bounds of ``GET /v1/tasks``'s query."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    agent: Annotated[StorableText | None, Field(min_length=1, max_length=200)] = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 50
    cursor: Annotated[StorableText | None, Field(min_length=1, max_length=500)] = None


class EventsQuery(BaseModel):
    """ListEvents' and WatchTask's arguments, with the bounds of ``GET /v1/tasks/{id}/events``."""

    model_config = ConfigDict(extra="forbid")

    task_id: UUID
    after_seq: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_EVENTS)] = MAX_EVENTS


def validated(model: type[M], fields: dict[str, Any]) -> M:
    """``fields`` as ``model``; :class:`InvalidFields` naming each field at fault, in the REST API's words."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = [{**error, "loc": ("request", *error["loc"])} for error in exc.errors()]
        raise InvalidFields(describe_validation_errors(errors)) from None


def submit_fields(request: pb.SubmitTaskRequest) -> dict[str, Any]:
    """The fields the client set, as a ``POST /v1/tasks`` body: unset ones take the server's defaults."""
    fields: dict[str, Any] = {"goal": request.goal}
    for name in _SUBMIT_OPTIONAL:
        if request.HasField(name):
            fields[name] = getattr(request, name)
    if request.HasField("input"):
        fields["input"] = struct_to_dict(request.input)
    if request.HasField("run_at"):
        fields["run_at"] = request.run_at.ToDatetime(tzinfo=UTC)
    return fields


def task_id(value: str) -> UUID:
    return validated(EventsQuery, {"task_id": value}).task_id


def list_fields(request: pb.ListTasksRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in ("status", "agent", "limit", "cursor") if request.HasField(name)}


def task_message(task: Task) -> pb.Task:
    """The task with everything, as Get, Submit, Cancel and Retry answer it."""
    public = TaskPublic.from_task(task)
    message = _summary_message(public)
    message.input.CopyFrom(dict_to_struct(public.input))
    if public.result is not None:
        message.result.CopyFrom(json_value(public.result))
    message.attempt_errors.extend(dict_to_struct(error) for error in public.attempt_errors)
    return message


def summary_message(task: Task) -> pb.Task:
    """The task without input, result and attempt errors, as List answers it."""
    return _summary_message(TaskSummary.from_task(task))


def _summary_message(public: TaskSummary) -> pb.Task:
    message = pb.Task(
        id=str(public.id),
        tenant=public.tenant,
        agent=public.agent,
        goal=public.goal,
        model=public.model,
        status=public.status.value,
        cancel_requested=public.cancel_requested,
        attempts=public.attempts,
        max_retries=public.max_retries,
        usage=pb.Usage(**public.usage.model_dump()),
        priority=public.priority,
        idempotency_key=public.idempotency_key,
        timeout_seconds=public.timeout_seconds,
        schedule_to_start_seconds=public.schedule_to_start_seconds,
        concurrency_key=public.concurrency_key,
        concurrency_limit=public.concurrency_limit,
        worker_id=public.worker_id,
        callback_url=public.callback_url,
        run_after=timestamp(public.run_after),
        created_at=timestamp(public.created_at),
        started_at=timestamp(public.started_at),
        finished_at=timestamp(public.finished_at),
        updated_at=timestamp(public.updated_at),
    )
    if public.error is not None:
        message.error.CopyFrom(pb.TaskError(type=public.error.type, message=public.error.message))
    return message


def event_message(event: TaskEvent) -> pb.TaskEvent:
    return pb.TaskEvent(
        seq=event.seq,
        task_id=str(event.task_id),
        attempt=event.attempt,
        type=event.type,
        payload=dict_to_struct(event.payload),
        created_at=timestamp(event.created_at),
    )


def watch_message(item: TaskEvent | LiveText) -> pb.WatchTaskResponse:
    if isinstance(item, LiveText):
        return pb.WatchTaskResponse(live_text=pb.LiveText(attempt=item.attempt, step=item.step, text=item.text))
    return pb.WatchTaskResponse(event=event_message(item))


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """``value`` as a Struct; one nested past :data:`MAX_JSON_LEVELS` as ``{"json": <its JSON text>}``."""
    struct = struct_pb2.Struct()
    struct.update({"json": json_dumps(value)} if _deeper_than(value, MAX_JSON_LEVELS) else value)
    return struct


def json_value(value: Any) -> struct_pb2.Value:
    """``value`` as a Value; one nested past :data:`MAX_JSON_LEVELS` as the string of its JSON text."""
    if _deeper_than(value, MAX_JSON_LEVELS):
        return struct_pb2.Value(string_value=json_dumps(value))
    holder = struct_pb2.Struct()
    holder.update({"value": value})
    return holder.fields["value"]


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``levels`` deep (stops looking once it does)."""
    layer = [value]
    for _ in range(levels):
        layer = [
            child
            for item in layer
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not layer:
            return False
    return True


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {key: python_value(value) for key, value in struct.fields.items()}


def python_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= EXACT_INTEGER else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [python_value(item) for item in value.list_value.values]
    return None  # null_value, or a Value with nothing set
