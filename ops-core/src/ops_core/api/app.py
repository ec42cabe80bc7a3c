"""The REST API's application factory.

``create_app`` builds nothing but the app: the runtime (engine, store,
publisher, agent registry, task service) is opened by the lifespan on the
server's own event loop and closed when it stops. A caller that already has a
runtime (tests, an embedding process) passes it in and keeps ownership of it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dramatiq
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from ops_core import tracing
from ops_core.api.auth import Authenticator, AuthMiddleware
from ops_core.api.body_limit import BodyLimitMiddleware
from ops_core.api.docs import install_docs
from ops_core.api.errors import install_error_handlers
from ops_core.api.mcp import install_mcp
from ops_core.api.metrics import ApiMetrics, MetricsMiddleware, metrics_router
from ops_core.api.routes import (
    agents,
    approvals,
    health,
    keys,
    schedules,
    sessions,
    stats,
    streams,
    tasks,
    tenants,
    usage,
    webhooks,
    workers,
    workflows,
)
from ops_core.api.routes.ui import install_ui
from ops_core.config import Settings, comma_list
from ops_core.live import LiveBus
from ops_core.runtime import Runtime
from ops_core.streams import StreamHub

API_VERSION = "1"
log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    broker: dramatiq.Broker | None = None,
    live: LiveBus | None = None,
) -> FastAPI:
    """Build the API for ``settings``.

    ``runtime``: serve with this already-open runtime (the caller closes it).
    ``broker``: when the lifespan opens its own runtime, publish through this
    broker instead of building one (``opscore dev`` shares its in-process broker
    with the embedded worker this way, and its live-text bus as ``live``).
    """
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with mcp.running(), serve(app):
            yield

    @asynccontextmanager
    async def serve(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            yield
            return
        if not settings.auth_required and broker is None:
            # opscore dev (which passes its broker) says so in its own banner.
            log.warning("OPSCORE_AUTH=disabled: the API asks no key; every request acts as an admin")
        # Off unless OTEL_* asks for traces; opscore dev has configured it for its one process already.
        tracing.configure("opscore-api")
        opened = Runtime.open(settings, broker=broker, live=live)
        _serve_with(app, opened)
        grpc_server = None
        try:
            if settings.grpc_port is not None:
                from ops_core.grpc_api.server import serve_app  # only a process that serves gRPC loads grpc

                grpc_server = await serve_app(app)
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            app.state.runtime = None
            app.state.authenticator = None
            await opened.close()
            if broker is None:
                # The broker was built for this app alone; its connections go with it.
                opened.broker.close()

    app = FastAPI(
        title="ops-core",
        version=API_VERSION,
        summary="A durable task orchestrator for agent runs.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        middleware=_middleware(settings, metrics),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.broker_check = health.BrokerCheck(settings)
    # Set here rather than in the lifespan so that an app driven without one
    # (httpx's ASGITransport in tests) still serves with the caller's runtime.
    app.state.runtime = None
    app.state.authenticator = None
    if runtime is not None:
        _serve_with(app, runtime)
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(metrics_router())
    app.include_router(tasks.router)
    app.include_router(approvals.router)
    app.include_router(sessions.router)
    app.include_router(schedules.router)
    app.include_router(streams.router)
    app.include_router(usage.router)
    app.include_router(keys.router)
    app.include_router(tenants.router)
    app.include_router(workers.router)
    app.include_router(stats.router)
    app.include_router(webhooks.router)
    app.include_router(workflows.router)
    app.include_router(agents.router)
    install_ui(app)
    mcp = install_mcp(app, settings)
    return app


def _serve_with(app: FastAPI, runtime: Runtime) -> None:
    app.state.runtime = runtime
    settings = runtime.settings
    app.state.authenticator = Authenticator(
        runtime.access, cache_seconds=settings.auth_cache_seconds, lookup_seconds=settings.request_deadline_seconds
    )
    app.state.streams = StreamHub(
        runtime.store,
        poll_seconds=settings.stream_poll_seconds,
        max_subscribers=settings.stream_max_subscribers,
        live=runtime.live,
    )


def _middleware(settings: Settings, metrics: ApiMetrics) -> list[Middleware]:
    # Outermost, so rejected bodies (413) are counted too.
    middleware = [Middleware(MetricsMiddleware, metrics=metrics)]
    origins = comma_list(settings.cors_origins)
    if origins:
        # Outside auth: a browser's preflight carries no key, and a 401 must reach the page that asked.
        # Keys travel in the Authorization header, never in cookies: no credentials mode, so no CSRF.
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PATCH"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    middleware += [
        Middleware(
            BodyLimitMiddleware,
            max_body_bytes=settings.max_body_bytes,
            max_drain_bytes=settings.max_body_drain_bytes,
        ),
        # Before the app reads the body: a request without a valid key learns nothing from it.
        Middleware(AuthMiddleware, settings=settings),
    ]
    return middleware
