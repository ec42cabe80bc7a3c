"""The run's parameters: ``--quick`` for a smoke run, or sizes chosen on the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCENARIOS = ("baselines", "drain", "submit", "e2e", "io")
# Tuning scenarios: run only when asked for with --only; the full report does not include them.
EXTRA_SCENARIOS = ("streams",)
FULL_RATES = (25, 50, 75, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000, 1300, 1600)
QUICK_RATES = (25, 50, 100, 200, 400, 800)


@dataclass(frozen=True)
class Config:
    quick: bool
    n: int  # drain backlog per system and process count
    rounds: int  # drain rounds, every system in turn each round; the report takes each one's median
    processes: tuple[int, ...]
    submit_rate: float  # the offered rate both submit endpoints are compared at
    submit_seconds: float
    max_rates: tuple[float, ...]
    step_seconds: float
    e2e_rate: float
    e2e_seconds: float
    e2e_processes: int
    io_n: int
    io_concurrency: int
    io_delay: float
    docs: Path
    subscribers: int = 50
    # OPSCORE_RATE_LIMITS for the ops-core drains: the cost of limits far above the load (docs/benchmarks.md).
    rate_limits: str | None = None
    only: tuple[str, ...] = SCENARIOS  # fewer: a tuning run that prints its figures and writes no report

    @property
    def complete(self) -> bool:
        return set(self.only) == set(SCENARIOS)

    @property
    def command(self) -> str:
        if self.quick:
            return "uv run python -m bench --quick"
        return (
            f"uv run python -m bench --n {self.n} --rounds {self.rounds} --io-n {self.io_n}"
            f" --io-concurrency {self.io_concurrency}"
        )


def parse(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench", description="ops-core benchmark suite")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every scenario")
    parser.add_argument("--n", type=int, help="drain backlog size (default 10000; quick 1000)")
    parser.add_argument("--rounds", type=int, help="interleaved drain rounds (default 3; quick 1)")
    parser.add_argument("--io-n", type=int, help="I/O-bound tasks (default 2000; quick 200)")
    parser.add_argument("--io-concurrency", type=int, help="OPSCORE_WORKER_CONCURRENCY for the I/O-bound run")
    parser.add_argument("--submit-rate", type=float, default=50.0, help="offered req/s for the submit comparison")
    parser.add_argument("--e2e-rate", type=float, default=100.0, help="offered tasks/s for end-to-end latency")
    parser.add_argument(
        "--subscribers", type=int, default=50, help="open event streams during the 'streams' drain (default 50)"
    )
    parser.add_argument(
        "--rate-limits", help="OPSCORE_RATE_LIMITS for the ops-core drains, e.g. 'offline rpm=1e8 tpm=1e11'"
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="where benchmarks.md and the plots go")
    parser.add_argument(
        "--only",
        choices=SCENARIOS + EXTRA_SCENARIOS,
        action="append",
        help="run only this scenario (repeatable); prints the figures and writes no report",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    io_n = args.io_n or (200 if quick else 2000)
    return Config(
        quick=quick,
        n=args.n or (1000 if quick else 10_000),
        rounds=args.rounds or (1 if quick else 3),
        processes=(1, 2),
        submit_rate=args.submit_rate,
        submit_seconds=3 if quick else 10,
        max_rates=QUICK_RATES if quick else FULL_RATES,
        step_seconds=2 if quick else 5,
        e2e_rate=args.e2e_rate,
        e2e_seconds=5 if quick else 20,
        e2e_processes=2,
        io_n=io_n,
        io_concurrency=args.io_concurrency or io_n,
        io_delay=5.0,
        docs=args.docs,
        subscribers=args.subscribers,
        rate_limits=args.rate_limits,
        only=tuple(args.only or SCENARIOS),
    )
