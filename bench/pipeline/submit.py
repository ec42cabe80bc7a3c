"""Submission: a fixed offered rate against ``POST /v1/tasks``, then the highest rate sustained.

No workers run, so the API (and PostgreSQL and RabbitMQ behind it) is all that is measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.load import Load, burst, fixed_rate, max_sustained
from bench.pipeline import deploy
from bench.rss import RssSampler, largest, tree_rss

WARMUP = 200


@dataclass(frozen=True)
class Submit:
    name: str
    at_rate: Load
    max_rate: float
    steps: list[Load]
    rss_idle_mb: float
    rss_peak_mb: float


async def measure(
    system: deploy.Deployment, rate: float, seconds: float, rates: Sequence[float], step_seconds: float
) -> Submit:
    system.start_api()
    await system.ready()
    assert system.api is not None
    await burst(system.submit_url, [deploy.HELLO] * WARMUP)  # connections, pools, lazy imports
    idle = sum(tree_rss(system.api.pid).values())
    with RssSampler([system.api.pid]) as rss:
        at_rate = await fixed_rate(system.submit_url, deploy.HELLO, rate, seconds)
        best, steps = await max_sustained(system.submit_url, deploy.HELLO, rates, step_seconds)
    return Submit(system.name, at_rate, best, steps, idle, largest(rss.peaks()))
