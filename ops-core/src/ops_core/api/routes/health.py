"""``/healthz`` (is the process alive) and ``/readyz`` (can it serve: database and broker reachable).

Liveness touches nothing, so an orchestrator never restarts a healthy API
because PostgreSQL blipped. Readiness runs both checks concurrently, each
under its own timeout, so a black-holed dependency yields a 503 within that
bound instead of a hung probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ops_core.api.deps import PublisherDep, SettingsDep, StoreDep
from ops_core.api.schemas import HealthPublic, ReadinessPublic

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

OK = "ok"


@router.get("/healthz")
async def healthz() -> HealthPublic:
    return HealthPublic(status=OK)


@router.get(
    "/readyz",
    responses={503: {"model": ReadinessPublic, "description": "A dependency is unreachable"}},
)
async def readyz(store: StoreDep, publisher: PublisherDep, settings: SettingsDep) -> JSONResponse:
    timeout = settings.db_timeout_seconds
    names = ("database", "broker")
    results = await asyncio.gather(
        _check(store.ping, timeout),
        _check(publisher.ping, timeout),
    )
    checks = dict(zip(names, results, strict=True))
    ready = all(result == OK for result in checks.values())
    if not ready:
        log.warning("not ready: %s", checks)
    body = ReadinessPublic(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())


async def _check(probe: Callable[[], Awaitable[None]], seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            await probe()
    except TimeoutError:
        return f"no answer within {seconds:g}s"
    except Exception as exc:
        # Any failure means not ready; the reason goes to the probe's caller, not a 500.
        return str(exc) or type(exc).__name__
    return OK
