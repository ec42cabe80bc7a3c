"""The gRPC server of an API process: the TaskService, plus the standard health and reflection services.

It runs on the API's event loop, started and stopped by the app's lifespan
(``opscore api --grpc-port P``, ``opscore dev --grpc-port P``, or
``OPSCORE_GRPC_PORT``), and serves with the REST app's own task service,
authenticator and stream hub. Its bounds follow the REST server's: a message
as large as ``OPSCORE_MAX_BODY_BYTES``, ``OPSCORE_MAX_CONNECTIONS`` calls at
once (beyond: RESOURCE_EXHAUSTED), and HTTP/2 pings every
``OPSCORE_STREAM_KEEPALIVE_SECONDS`` that drop a peer which stops answering.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from fastapi import FastAPI
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from ops_core.config import Settings
from ops_core.errors import ConfigError
from ops_core.grpc_api import taskservice_pb2 as pb
from ops_core.grpc_api.service import SERVICE_NAME, Backend, Context, TaskServicer, Undecodable
from ops_core.runtime import Runtime

log = logging.getLogger(__name__)

# Long enough for a unary call in flight to answer; open WatchTask streams are cut, and their clients resume.
STOP_GRACE_SECONDS = 2.0


class GrpcServer:
    """A started server and its health service, which says NOT_SERVING once it begins to stop."""

    def __init__(self, server: grpc.aio.Server, health: HealthServicer, port: int) -> None:
        self._server = server
        self._health = health
        self.port = port

    async def stop(self) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(STOP_GRACE_SECONDS)


async def start_grpc(backend: Backend, *, host: str, port: int) -> GrpcServer:
    """Serve ``backend`` on ``host:port`` (port 0: any free port, see ``.port``)."""
    settings = backend.settings
    keepalive_ms = int(settings.stream_keepalive_seconds * 1000)
    server = grpc.aio.server(
        maximum_concurrent_rpcs=settings.max_connections,
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            # grpc binds with SO_REUSEPORT by default: a second process on the same port would share it
            # silently instead of failing, as the REST port does.
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", keepalive_ms),
            ("grpc.keepalive_timeout_ms", int(settings.stream_send_timeout_seconds * 1000)),
            ("grpc.http2.max_pings_without_data", 0),
            # Clients may ping as often as the server does (grpc's default floor is 5 minutes).
            ("grpc.http2.min_ping_interval_without_data_ms", keepalive_ms),
        ],
    )
    server.add_generic_rpc_handlers((task_service_handler(TaskServicer(backend)),))
    health = HealthServicer()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # taken, or not an address of this machine
        raise ConfigError(f"OPSCORE_GRPC_PORT: cannot listen on {address}: {exc}") from None
    await server.start()
    log.info("gRPC TaskService listening on %s", f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}")
    return GrpcServer(server, health, bound)


def task_service_handler(servicer: TaskServicer) -> grpc.GenericRpcHandler:
    """The TaskService's methods, as the generated ``add_TaskServiceServicer_to_server`` would register
    them, except that a request which cannot be decoded reaches the servicer, which refuses it as
    INVALID_ARGUMENT once the key is checked (grpc itself would answer UNKNOWN, naming the exception)."""
    service = pb.DESCRIPTOR.services_by_name["TaskService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        decode = _decoder(getattr(pb, method.input_type.name))
        encode = getattr(pb, method.output_type.name).SerializeToString
        behaviour = getattr(servicer, method.name)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _streaming(servicer, behaviour), decode, encode
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(_unary(servicer, behaviour), decode, encode)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _decoder(message: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def decode(data: bytes) -> Message | Undecodable:
        try:
            return message.FromString(data)
        except DecodeError as exc:
            return Undecodable(message.DESCRIPTOR.full_name, str(exc))

    return decode


def _unary(
    servicer: TaskServicer, behaviour: Callable[[Message, Context], Awaitable[Message]]
) -> Callable[[Message | Undecodable, Context], Awaitable[Message | None]]:
    async def handle(request: Message | Undecodable, context: Context) -> Message | None:
        if isinstance(request, Undecodable):
            await servicer.refuse(context, request)
            return None
        return await behaviour(request, context)

    return handle


def _streaming(
    servicer: TaskServicer, behaviour: Callable[[Message, Context], AsyncGenerator[Message]]
) -> Callable[[Message | Undecodable, Context], AsyncIterator[Message]]:
    async def handle(request: Message | Undecodable, context: Context) -> AsyncIterator[Message]:
        if isinstance(request, Undecodable):
            await servicer.refuse(context, request)
            return
        async with contextlib.aclosing(behaviour(request, context)) as items:
            async for item in items:
                yield item

    return handle


async def serve_app(app: FastAPI) -> GrpcServer:
    """The server for a REST app whose lifespan has opened its runtime, on ``OPSCORE_GRPC_PORT``."""
    settings: Settings = app.state.settings
    assert settings.grpc_port is not None
    return await start_grpc(backend_of(app), host=settings.host, port=settings.grpc_port)


def backend_of(app: FastAPI) -> Backend:
    """The REST app's own task service, store, authenticator, stream hub and metrics."""
    runtime: Runtime = app.state.runtime
    return Backend(
        settings=app.state.settings,
        tasks=runtime.tasks,
        store=runtime.store,
        authenticator=app.state.authenticator,
        streams=app.state.streams,
        metrics=app.state.metrics,
    )
