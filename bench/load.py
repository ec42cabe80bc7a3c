"""An open-loop load generator: requests go out on a fixed schedule whatever the server does.

A closed loop (send, wait, send) slows down with the server and hides its
queueing (coordinated omission). Here request *i* is due at ``start + i/rate``;
a send that cannot go out on time is counted as late, and in-flight requests
are bounded so an overloaded server shows up as drops and errors instead of
an ever-growing client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.stats import Latency

LATE_SECONDS = 0.005
MAX_IN_FLIGHT = 512
# What "sustained" means for the max-rate search.
MIN_ACHIEVED_FRACTION = 0.95
MAX_LATE_FRACTION = 0.05
MAX_P99_SECONDS = 0.5


@dataclass(frozen=True)
class Load:
    offered: float  # requests per second
    seconds: float  # the schedule's length
    sent: int
    ok: int
    errors: int
    dropped: int  # not sent: MAX_IN_FLIGHT requests were already waiting
    late: int
    achieved: float  # successful responses per second, over the schedule until the last response
    latency: Latency  # from the actual send to the response

    @property
    def sustained(self) -> bool:
        return (
            self.errors == 0
            and self.dropped == 0
            and self.achieved >= MIN_ACHIEVED_FRACTION * self.offered
            and self.late <= MAX_LATE_FRACTION * self.sent
            and self.latency.p99 <= MAX_P99_SECONDS
        )


async def fixed_rate(
    url: str,
    body: dict[str, Any],
    rate: float,
    seconds: float,
    expect: int = 202,
    headers: dict[str, str] | None = None,
) -> Load:
    total = max(1, round(rate * seconds))
    latencies: list[float] = []
    errors = dropped = late = 0
    in_flight: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

        async def send() -> None:
            nonlocal errors
            began = time.monotonic()
            try:
                response = await client.post(url, json=body)
            except httpx.HTTPError:
                errors += 1
                return
            if response.status_code == expect:
                latencies.append(time.monotonic() - began)
            else:
                errors += 1

        start = time.monotonic() + 0.05
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > LATE_SECONDS:
                late += 1
            if len(in_flight) >= MAX_IN_FLIGHT:
                dropped += 1
                continue
            task = asyncio.create_task(send())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
        elapsed = time.monotonic() - start
    return Load(
        offered=rate,
        seconds=seconds,
        sent=total - dropped,
        ok=len(latencies),
        errors=errors,
        dropped=dropped,
        late=late,
        achieved=len(latencies) / elapsed,
        latency=Latency.of(latencies),
    )


async def max_sustained(
    url: str, body: dict[str, Any], rates: Sequence[float], seconds: float
) -> tuple[float, list[Load]]:
    """Step the offered rate up until a step is not sustained; the last sustained rate is the answer."""
    steps: list[Load] = []
    best = 0.0
    for rate in rates:
        step = await fixed_rate(url, body, rate, seconds)
        steps.append(step)
        if not step.sustained:
            break
        best = step.achieved
        await asyncio.sleep(1.0)  # let the server settle between steps
    return best, steps


async def burst(
    url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int = 32,
    expect: int = 202,
    headers: dict[str, str] | None = None,
) -> None:
    """Send every body as fast as ``concurrency`` allows: for filling a backlog, not for measuring."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                response = await client.post(url, json=body)
                if response.status_code != expect:
                    raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
