"""Prometheus metrics for one app instance.

Each app gets its own ``CollectorRegistry`` so that two apps in one process
(tests, or an embedded dev server) never share or double-register series.
Requests are labelled by route *template* (``/v1/tasks/{task_id}``), never by
raw path, so the label set stays bounded whatever clients send. Because it
is bounded, the labelled children are cached: ``labels()`` takes a lock and
builds a key on every call, which the request path need not pay.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ops_core.api.auth import MetricsReader

UNMATCHED = "unmatched"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "opscore_http_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "opscore_http_request_duration_seconds",
            "Time to serve an HTTP request, by route template.",
            ["route", "method"],
            registry=self.registry,
        )
        self.tasks_submitted = Counter(
            "opscore_tasks_submitted",
            "Tasks accepted through the API, by agent; idempotent repeats are not counted.",
            ["agent"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._submitted_children: dict[str, Counter] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def task_submitted(self, agent: str) -> None:
        # Agents come from the registry (unknown ones are rejected first), so this stays bounded too.
        child = self._submitted_children.get(agent)
        if child is None:
            child = self._submitted_children[agent] = self.tasks_submitted.labels(agent)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request, including ones rejected before routing."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before responding, the server answers 500
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = _route_template(scope.get("route"))
            method = str(scope.get("method", ""))
            self.metrics.observe_request(route, method, status, time.perf_counter() - started)


def _route_template(route: BaseRoute | None) -> str:
    if isinstance(route, Route):
        return route.path
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def metrics_router() -> APIRouter:
    """``/metrics`` for Prometheus, with a key that has the ``metrics`` scope (Prometheus sends bearer keys)."""
    router = APIRouter(tags=["health"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request, caller: MetricsReader) -> Response:
        api_metrics: ApiMetrics = request.app.state.metrics
        return Response(content=api_metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
