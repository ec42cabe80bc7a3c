"""How a baseline's worker process learns where to connect: environment variables, set by the bench."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tests.support.processes import REPO_ROOT


@dataclass(frozen=True)
class WorkerConfig:
    amqp_url: str
    queue: str
    dsn: str  # libpq-style PostgreSQL URL

    def to_env(self) -> dict[str, str]:
        return {"BENCH_AMQP_URL": self.amqp_url, "BENCH_QUEUE": self.queue, "BENCH_DSN": self.dsn}

    @classmethod
    def from_env(cls) -> WorkerConfig:
        return cls(os.environ["BENCH_AMQP_URL"], os.environ["BENCH_QUEUE"], os.environ["BENCH_DSN"])


def process_env(config: WorkerConfig) -> dict[str, str]:
    """The bench's environment plus the config; unbuffered so logs are complete when a worker is killed."""
    # The worker CLIs import ``bench.baselines.*`` by name, whatever directory they resolve from.
    return {**os.environ, **config.to_env(), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}
