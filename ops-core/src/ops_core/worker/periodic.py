"""Runs a worker's periodic duties on its loop, each in a task of its own that outlives any one failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Duty = Callable[[], Awaitable[None]]


async def every(seconds: float, duty: Duty, name: str) -> None:
    """Run ``duty``, then wait ``seconds``, until cancelled."""
    while True:
        try:
            await duty()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A database or broker outage must not kill the duty loops: they resume when it is back.
            log.warning("%s failed: %s", name, exc)
        await asyncio.sleep(seconds)
