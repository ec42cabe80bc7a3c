"""Who may call what over gRPC: the bearer key in metadata, scopes and tenants, exactly as over REST."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from fastapi import FastAPI

from ops_core.api.app import create_app
from ops_core.api.auth import UNAUTHENTICATED
from ops_core.config import Settings
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.grpc_api import taskservice_pb2_grpc
from ops_core.grpc_api.server import backend_of, start_grpc
from ops_core.keys import Scope, new_secret
from ops_core.runtime import Runtime
from tests.ops_core.grpc_api.conftest import Metadata, bearer, new_key
from tests.ops_core.grpc_api.test_service import status_of, submit


def calls(stub: Any, metadata: Metadata | None) -> list[Any]:
    task_id = str(uuid.uuid4())
    return [
        stub.Submit(pb.SubmitTaskRequest(goal="x"), metadata=metadata),
        stub.Get(pb.GetTaskRequest(task_id=task_id), metadata=metadata),
        stub.List(pb.ListTasksRequest(), metadata=metadata),
        stub.Cancel(pb.CancelTaskRequest(task_id=task_id), metadata=metadata),
        stub.Retry(pb.RetryTaskRequest(task_id=task_id), metadata=metadata),
        stub.ListEvents(pb.ListTaskEventsRequest(task_id=task_id), metadata=metadata),
        stub.WatchTask(pb.WatchTaskRequest(task_id=task_id), metadata=metadata).read(),
    ]


async def test_every_rpc_needs_a_valid_key(stub: Any, runtime: Runtime) -> None:
    unknown = new_secret().secret
    for metadata in (
        None,
        (("authorization", "Basic abc"),),
        (("authorization", "Bearer "),),
        bearer("nonsense"),
        bearer(unknown),
    ):
        for call in calls(stub, metadata):
            code, message, trailing = await status_of(call)
            assert (code, message) == (grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED), metadata
            assert trailing == {"error-code": "unauthenticated", "www-authenticate": "Bearer"}


async def test_a_revoked_key_is_refused(stub: Any, runtime: Runtime) -> None:
    key, secret = await runtime.access.create_key(tenant="a", scopes=[Scope.TASKS_READ])
    await runtime.access.revoke_key(key.id, tenant="a")

    code, _, _ = await status_of(stub.List(pb.ListTasksRequest(), metadata=bearer(secret)))

    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_scopes_are_enforced(stub: Any, runtime: Runtime) -> None:
    reader = bearer(await new_key(runtime, "a", Scope.TASKS_READ))
    metrics_only = bearer(await new_key(runtime, "a", Scope.METRICS))

    code, message, trailing = await status_of(stub.Submit(pb.SubmitTaskRequest(goal="x"), metadata=reader))
    assert (code, message) == (grpc.StatusCode.PERMISSION_DENIED, "this key lacks the tasks:write scope")
    assert trailing["error-code"] == "forbidden"
    assert (await stub.List(pb.ListTasksRequest(), metadata=reader)).items == []
    code, message, _ = await status_of(stub.List(pb.ListTasksRequest(), metadata=metrics_only))
    assert (code, message) == (grpc.StatusCode.PERMISSION_DENIED, "this key lacks the tasks:read scope")


async def test_a_tenant_sees_only_its_own_tasks(stub: Any, runtime: Runtime, admin: Metadata) -> None:
    a = bearer(await new_key(runtime, "a", Scope.TASKS_READ, Scope.TASKS_WRITE))
    b = bearer(await new_key(runtime, "b", Scope.TASKS_READ, Scope.TASKS_WRITE))
    mine = await submit(stub, a)
    theirs = await submit(stub, b)

    assert mine.tenant == "a" and theirs.tenant == "b"
    assert [t.id for t in (await stub.List(pb.ListTasksRequest(), metadata=a)).items] == [mine.id]
    for call in (
        stub.Get(pb.GetTaskRequest(task_id=theirs.id), metadata=a),
        stub.Cancel(pb.CancelTaskRequest(task_id=theirs.id), metadata=a),
        stub.ListEvents(pb.ListTaskEventsRequest(task_id=theirs.id), metadata=a),
        stub.WatchTask(pb.WatchTaskRequest(task_id=theirs.id), metadata=a).read(),
    ):
        code, message, _ = await status_of(call)
        assert code == grpc.StatusCode.NOT_FOUND and theirs.id in message
    # An admin key sees every tenant's.
    assert {t.id for t in (await stub.List(pb.ListTasksRequest(), metadata=admin)).items} == {mine.id, theirs.id}


async def test_with_auth_disabled_no_key_is_asked(settings: Settings, runtime: Runtime) -> None:
    open_settings = settings.model_copy(update={"auth": "disabled"})
    app: FastAPI = create_app(open_settings, runtime=runtime)
    server = await start_grpc(backend_of(app), host="127.0.0.1", port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = taskservice_pb2_grpc.TaskServiceStub(channel)
            answer = await stub.Submit(pb.SubmitTaskRequest(goal="x"))
            assert answer.created and answer.task.tenant == "default"
    finally:
        await server.stop()
