"""Submission: a fixed offered rate against ``POST /v1/tasks``, then the highest rate sustained.

No workers run, so the API (and PostgreSQL and RabbitMQ behind it) is all that is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from bench.load import Load, burst, fixed_rate
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
    systems: Sequence[deploy.Deployment], rate: float, seconds: float, rates: Sequence[float], step_seconds: float
) -> list[Submit]:
    """Both APIs run side by side and take turns: each fixed-rate run and each step of the search is
    measured for one system right after the other, so the machine's drift hits both alike."""
    for system in systems:
        system.start_api()
    for system in systems:
        await system.ready()
        await burst(
            system.submit_url, [deploy.HELLO] * WARMUP, headers=system.headers
        )  # connections, pools, lazy imports
    pids = [system.api.pid for system in systems if system.api is not None]
    idle = [sum(tree_rss(pid).values()) for pid in pids]
    with contextlib.ExitStack() as stack:
        samplers = [stack.enter_context(RssSampler([pid])) for pid in pids]
        at_rate = [
            await fixed_rate(system.submit_url, deploy.HELLO, rate, seconds, headers=system.headers)
            for system in systems
        ]
        steps: list[list[Load]] = [[] for _ in systems]
        best = [0.0 for _ in systems]
        for step_rate in rates:
            going = [i for i, taken in enumerate(steps) if not taken or taken[-1].sustained]
            if not going:
                break
            for i in going:
                step = await fixed_rate(
                    systems[i].submit_url, deploy.HELLO, step_rate, step_seconds, headers=systems[i].headers
                )
                steps[i].append(step)
                if step.sustained:
                    best[i] = step.achieved
                await asyncio.sleep(1.0)  # let the server settle between steps
    return [
        Submit(system.name, at_rate[i], best[i], steps[i], idle[i], largest(samplers[i].peaks()))
        for i, system in enumerate(systems)
    ]
