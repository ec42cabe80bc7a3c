"""``/healthz`` (is the process alive) and ``/readyz`` (can it serve: database and broker reachable).

Liveness touches nothing, so an orchestrator never restarts a healthy API
because PostgreSQL blipped. Readiness runs both checks concurrently, each
under its own timeout, so a black-holed dependency yields a 503 within that
bound instead of a hung probe.

The broker check logs in (credentials and vhost, as the publisher will), since
an open port says nothing about a wrong password. A login costs a connection,
so its answer is kept for ``BROKER_CHECK_TTL_SECONDS``: a storm of probes
opens one connection, not one each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ops_core.api.deps import SettingsDep, StoreDep
from ops_core.api.schemas import HealthPublic, ReadinessPublic
from ops_core.config import Settings
from ops_core.preflight import broker_login

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

OK = "ok"
BROKER_CHECK_TTL_SECONDS = 1.0
# The login thread gets longer than the probe waits, so the probe's own timeout always decides the answer.
LOGIN_GRACE_SECONDS = 1.0


class BrokerCheck:
    """The broker login's last answer, reused for ``ttl`` seconds; concurrent probes share one login."""

    def __init__(self, settings: Settings, *, ttl: float = BROKER_CHECK_TTL_SECONDS) -> None:
        self._settings = settings
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._answer = OK
        self._at: float | None = None

    async def __call__(self) -> str:
        if self._settings.is_memory_broker:
            return OK
        async with self._lock:
            if self._at is None or time.monotonic() - self._at >= self._ttl:
                self._answer = await _check(self._login, self._settings.db_timeout_seconds)
                self._at = time.monotonic()
            return self._answer

    async def _login(self) -> None:
        url, seconds = self._settings.broker_url, self._settings.db_timeout_seconds + LOGIN_GRACE_SECONDS
        await asyncio.to_thread(broker_login, url, seconds)


async def get_broker_check(request: Request) -> BrokerCheck:
    check: BrokerCheck = request.app.state.broker_check
    return check


@router.get("/healthz")
async def healthz() -> HealthPublic:
    return HealthPublic(status=OK)


@router.get(
    "/readyz",
    responses={503: {"model": ReadinessPublic, "description": "A dependency is unreachable"}},
)
async def readyz(
    store: StoreDep, broker_check: Annotated[BrokerCheck, Depends(get_broker_check)], settings: SettingsDep
) -> JSONResponse:
    timeout = settings.db_timeout_seconds
    names = ("database", "broker")
    results = await asyncio.gather(_check(store.ping, timeout), broker_check())
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
