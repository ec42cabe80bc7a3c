"""The lifecycle: the transition table and the one retry decision everything asks."""

from __future__ import annotations

import pytest

from agentkit.errors import (
    ModelAuthError,
    ModelError,
    ModelFailed,
    ModelRateLimitError,
    ModelServerError,
    StepLimitExceeded,
)
from ops_core.config import Settings
from ops_core.lifecycle import (
    TRANSITIONS,
    GiveUp,
    IllegalTransition,
    Retry,
    RetryPolicy,
    TaskStatus,
    check,
    sources,
)
from ops_core.worker.execute import decide

POLICY = RetryPolicy.from_settings(Settings(retry_backoff_seconds=2, retry_backoff_max_seconds=30))


def _delay(attempt: int, error: ModelError, max_retries: int = 100) -> float:
    decision = decide(attempt, max_retries, POLICY, ModelFailed(error))
    assert isinstance(decision, Retry), decision
    return decision.delay


def test_delay_doubles_per_attempt_within_jitter_and_is_capped() -> None:
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)]:
        delays = [_delay(attempt, ModelServerError("boom")) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered: workers retrying together spread out


def test_a_rate_limit_waits_at_least_its_retry_after() -> None:
    assert all(_delay(1, ModelRateLimitError("slow down", retry_after=25.0)) >= 25.0 for _ in range(50))


@pytest.mark.parametrize(
    ("attempt", "max_retries", "retries"), [(1, 0, False), (1, 1, True), (2, 1, False), (4, 3, False)]
)
def test_a_task_runs_at_most_max_retries_plus_one_attempts(attempt: int, max_retries: int, retries: bool) -> None:
    decision = POLICY.decide(attempt=attempt, max_retries=max_retries, retryable=True)
    assert isinstance(decision, Retry) is retries


@pytest.mark.parametrize("error", [ModelFailed(ModelAuthError("bad key")), StepLimitExceeded("too many steps")])
def test_a_permanent_error_is_never_retried(error: ModelFailed | StepLimitExceeded) -> None:
    assert isinstance(decide(1, 5, POLICY, error), GiveUp)


def test_a_lost_worker_requeues_at_once() -> None:
    assert POLICY.decide(attempt=1, max_retries=3, retryable=True, backoff=False) == Retry(0.0)


def test_a_manual_retry_renews_the_configured_budget_on_top_of_the_attempts_used() -> None:
    # configured max_retries 2, all 3 attempts used: a manual retry allows 3 more attempts.
    assert RetryPolicy().renewed_budget(attempts=3, max_retries=2, retry_base=0) == (5, 3)
    # and again after those: the configured 2 stays recoverable as max_retries - retry_base.
    assert RetryPolicy().renewed_budget(attempts=6, max_retries=5, retry_base=3) == (8, 6)


def test_terminal_statuses_only_leave_by_manual_retry() -> None:
    for status in TaskStatus:
        targets = {to for current, to in TRANSITIONS if current is status}
        if status.is_terminal:
            assert targets <= {TaskStatus.PENDING}


def test_check_refuses_what_the_table_does_not_list() -> None:
    check(TaskStatus.PENDING, TaskStatus.RUNNING)
    with pytest.raises(IllegalTransition):
        check(TaskStatus.COMPLETED, TaskStatus.PENDING)
    with pytest.raises(IllegalTransition):
        check(TaskStatus.PENDING, TaskStatus.COMPLETED)


def test_sources_are_read_off_the_table() -> None:
    assert sources(TaskStatus.PENDING) == {
        TaskStatus.RUNNING,
        TaskStatus.WAITING,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
    }
    assert sources(TaskStatus.WAITING) == {TaskStatus.RUNNING}
    assert sources(TaskStatus.CANCELLED) == {TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.WAITING}
    assert sources(TaskStatus.COMPLETED) == {TaskStatus.RUNNING}
