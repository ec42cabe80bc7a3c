"""The gRPC TaskService live, through a generic client that knows the service only through reflection.

The API process is started as an operator would, ``opscore api --grpc-port P``, beside a worker. The
client below has no generated stubs: it asks the server's reflection service for the descriptors,
builds message classes from them and calls methods by name with JSON-shaped dicts, as grpcurl does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import Deployment
from tests.support.processes import ManagedProcess, free_port
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVICE = "opscore.v1.TaskService"
MODEL = "openai:fake-model"
# Two steps: a calculator call, then an answer that the fake model delays a little, while the watch is open.
GOAL = "[[tool_stall=1]] add 2 and 3 over gRPC"
CALL_TIMEOUT = 30


class ReflectionClient:
    """Calls any method of a server that serves reflection, by its full name, with dicts in and out."""

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._channel = channel
        self._metadata = metadata
        self.database = ProtoReflectionDescriptorDatabase(channel)
        self._pool = descriptor_pool.DescriptorPool(self.database)

    def services(self) -> list[str]:
        return list(self.database.get_services())

    def _method(self, name: str) -> tuple[str, Any, Any, bool]:
        service_name, method_name = name.rsplit(".", 1)
        method = self._pool.FindServiceByName(service_name).methods_by_name[method_name]
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        return f"/{service_name}/{method_name}", request, response, method.server_streaming

    def call(self, name: str, body: dict[str, Any], metadata: tuple[tuple[str, str], ...] | None = None) -> Any:
        path, request, response, streaming = self._method(name)
        assert not streaming, name
        stub = self._channel.unary_unary(
            path, request_serializer=request.SerializeToString, response_deserializer=response.FromString
        )
        answer = stub(json_format.ParseDict(body, request()), metadata=self._pick(metadata), timeout=CALL_TIMEOUT)
        return _as_dict(answer)

    def stream(self, name: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        path, request, response, streaming = self._method(name)
        assert streaming, name
        stub = self._channel.unary_stream(
            path, request_serializer=request.SerializeToString, response_deserializer=response.FromString
        )
        for answer in stub(json_format.ParseDict(body, request()), metadata=self._metadata, timeout=120):
            yield _as_dict(answer)

    def _pick(self, metadata: tuple[tuple[str, str], ...] | None) -> tuple[tuple[str, str], ...]:
        return self._metadata if metadata is None else metadata


def _as_dict(message: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


@pytest.fixture(scope="module")
def grpc_api(deployments: DeploymentFactory) -> Iterator[tuple[Deployment, int]]:
    """A deployment with one worker, and an API process serving gRPC too: its gRPC port."""
    deployment = deployments(workers=1)
    port, grpc_port = free_port(), free_port()
    api = ManagedProcess(
        "api-grpc", ["api", "--port", str(port), "--grpc-port", str(grpc_port)], deployment.env, deployment.log_dir
    )
    deployment.extra_apis.append(api.start())
    deployment.wait_ready(url=f"http://127.0.0.1:{port}")
    yield deployment, grpc_port


@pytest.fixture
def client(grpc_api: tuple[Deployment, int]) -> Iterator[ReflectionClient]:
    deployment, port = grpc_api
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield ReflectionClient(channel, (("authorization", deployment.headers["Authorization"]),))


def test_health_says_serving(client: ReflectionClient) -> None:
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", SERVICE} <= set(client.services())
    for service in ("", SERVICE):
        assert client.call("grpc.health.v1.Health.Check", {"service": service}) == {"status": "SERVING"}


def test_a_generic_client_submits_watches_and_lists_a_task(client: ReflectionClient) -> None:
    submitted = client.call(
        f"{SERVICE}.Submit", {"goal": GOAL, "model": MODEL, "input": {"n": 2, "tags": ["grpc"]}, "priority": 3}
    )
    assert submitted["created"] is True
    task = submitted["task"]
    assert (task["status"], task["priority"], task["input"]) == ("pending", 3, {"n": 2.0, "tags": ["grpc"]})

    watched = list(client.stream(f"{SERVICE}.WatchTask", {"task_id": task["id"]}))

    events = [item["event"] for item in watched if "event" in item]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "every event, in order, each once"
    assert events[-1]["type"] == "status" and events[-1]["payload"]["to"] == "completed"
    assert {"tool_call", "tool_result", "final_answer"} <= {e["type"] for e in events}
    logged = client.call(f"{SERVICE}.ListEvents", {"task_id": task["id"]})["items"]
    assert logged == events, "the watch sent exactly the stored log"
    resumed = list(client.stream(f"{SERVICE}.WatchTask", {"task_id": task["id"], "after_seq": 3}))
    assert [item["event"]["seq"] for item in resumed] == [e["seq"] for e in events[3:]]

    done = client.call(f"{SERVICE}.Get", {"task_id": task["id"]})
    assert done["status"] == "completed" and done["result"].startswith(f"done: {GOAL}")
    assert '"n": 2,' in done["result"], "the agent got the input with its whole number as an int"
    assert int(done["usage"]["total_tokens"]) > 0

    def pages() -> list[str]:
        seen, cursor = [], None
        while True:
            body: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = client.call(f"{SERVICE}.List", body)
            seen += [item["id"] for item in page.get("items", [])]
            cursor = page.get("next_cursor")
            if not cursor:
                return seen

    assert task["id"] in wait_for_sync(pages, lambda ids: task["id"] in ids, timeout=30, what="the task listed")
    completed = client.call(f"{SERVICE}.List", {"status": "completed"})
    assert task["id"] in [item["id"] for item in completed["items"]]


def test_keys_and_tenants_hold_over_grpc(client: ReflectionClient, grpc_api: tuple[Deployment, int]) -> None:
    deployment, _ = grpc_api
    mine = client.call(f"{SERVICE}.Submit", {"goal": "What is 1 + 1?", "model": MODEL})["task"]
    other = (("authorization", f"Bearer {deployment.create_key('grpc-other', 'tasks:read')}"),)

    with pytest.raises(grpc.RpcError) as anonymous:
        client.call(f"{SERVICE}.Get", {"task_id": mine["id"]}, metadata=())
    with pytest.raises(grpc.RpcError) as elsewhere:
        client.call(f"{SERVICE}.Get", {"task_id": mine["id"]}, metadata=other)
    with pytest.raises(grpc.RpcError) as read_only:
        client.call(f"{SERVICE}.Submit", {"goal": "x"}, metadata=other)

    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert elsewhere.value.code() == grpc.StatusCode.NOT_FOUND
    assert elsewhere.value.details() == f"task {mine['id']} not found"
    assert read_only.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert client.call(f"{SERVICE}.List", {}, metadata=other).get("items", []) == []
