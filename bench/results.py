"""Everything one run measured; the report and the plots read only this."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config import Config
from bench.pipeline.drain import OpsCoreDrain
from bench.pipeline.io_bound import IoBound
from bench.pipeline.latency import EndToEnd
from bench.pipeline.submit import Submit
from bench.progress import Drain

# Baseline names, used as keys and in the report.
NOOP = "(a) raw Dramatiq, no-op"
DRAMATIQ_PG = "(b) Dramatiq + 2 UPDATEs (floor)"
CELERY_PG = "(c) Celery + 2 UPDATEs"
OPSCORE = "ops-core (offline agent)"


@dataclass
class Results:
    config: Config
    machine: dict[str, str]
    drains: dict[tuple[str, int], Drain] = field(default_factory=dict)  # (system, processes): the median round
    drain_rounds: dict[tuple[str, int], list[Drain]] = field(default_factory=dict)  # every round, in run order
    opscore_drains: dict[int, OpsCoreDrain] = field(default_factory=dict)
    submits: dict[str, Submit] = field(default_factory=dict)  # "ops-core" / "bare"
    e2e: dict[str, EndToEnd] = field(default_factory=dict)
    io_bound: IoBound | None = None
    errors: dict[str, str] = field(default_factory=dict)  # scenario → what went wrong
    seconds: float = 0.0
