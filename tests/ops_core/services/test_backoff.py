"""Task-level retry delays: exponential per attempt, jittered, capped, and never before a Retry-After."""

from __future__ import annotations

from agentkit.errors import ModelFailed, ModelRateLimitError, ModelServerError
from ops_core.config import Settings
from ops_core.services.execute import retry_delay

SETTINGS = Settings(retry_backoff_seconds=2, retry_backoff_max_seconds=30)


def _server_error() -> ModelFailed:
    return ModelFailed(ModelServerError("boom"))


def test_delay_doubles_per_attempt_within_jitter_and_is_capped() -> None:
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)]:
        delays = [retry_delay(attempt, SETTINGS, _server_error()) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered: workers retrying together spread out


def test_a_rate_limit_waits_at_least_its_retry_after() -> None:
    error = ModelFailed(ModelRateLimitError("slow down", retry_after=25.0))
    assert all(retry_delay(1, SETTINGS, error) >= 25.0 for _ in range(50))
