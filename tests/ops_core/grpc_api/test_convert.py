"""Rows into messages: JSON as Struct/Value, whole numbers back as ints, and output too deep for protobuf."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from ops_core.api.schemas import TaskCreate
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.grpc_api.convert import dict_to_struct, json_value, python_value, struct_to_dict


def nest(levels: int, kind: str = "object") -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"d": value} if kind == "object" else [value]
    return value


def test_json_round_trips_with_whole_numbers_as_ints() -> None:
    value = {"n": 3, "x": 1.5, "big": 2**60, "s": "é", "l": [True, None, {"k": -0.0}], "e": {}}

    back = struct_to_dict(dict_to_struct(value))

    assert back == {**value, "big": float(2**60)}
    assert isinstance(back["n"], int) and isinstance(back["x"], float) and isinstance(back["big"], float)
    assert python_value(json_value("text")) == "text" and python_value(json_value(None)) is None


def test_the_deepest_input_submit_accepts_is_sent_as_structure() -> None:
    levels = 1
    while True:
        try:
            TaskCreate(goal="x", input=nest(levels + 1))
        except ValidationError:
            break
        levels += 1
    deepest = nest(levels)

    task = pb.Task(input=dict_to_struct(deepest))

    assert struct_to_dict(pb.Task.FromString(task.SerializeToString()).input) == deepest


@pytest.mark.parametrize("kind", ["object", "array"])
def test_output_too_deep_for_protobuf_is_sent_as_json_text(kind: str) -> None:
    deep = nest(60, kind)

    result = json_value(deep)
    payload = dict_to_struct({"deep": deep})
    # Messages any client decodes, wrapped as the server sends them.
    answer = pb.SubmitTaskResponse(task=pb.Task(result=result))
    event = pb.WatchTaskResponse(event=pb.TaskEvent(payload=payload))

    assert json.loads(pb.SubmitTaskResponse.FromString(answer.SerializeToString()).task.result.string_value) == deep
    sent = struct_to_dict(pb.WatchTaskResponse.FromString(event.SerializeToString()).event.payload)
    assert json.loads(sent["json"]) == {"deep": deep}
