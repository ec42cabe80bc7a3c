"""The publisher's circuit breaker: fail fast while the broker is down, probe once per cooldown."""

from __future__ import annotations

import pytest

from ops_core.queue.circuit import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_stays_closed_below_the_threshold_and_resets_on_success() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=5, clock=Clock())
    breaker.failed()
    breaker.failed()
    assert breaker.allow() and not breaker.is_open
    breaker.succeeded()
    breaker.failed()
    breaker.failed()
    assert breaker.allow()  # the success reset the count: two in a row is still below three


def test_opens_after_threshold_failures_and_refuses_until_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown=5, clock=clock)
    breaker.failed()
    breaker.failed()
    assert breaker.is_open
    assert not breaker.allow()
    clock.now = 4.9
    assert not breaker.allow()


def test_after_the_cooldown_one_probe_goes_through_and_its_result_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    breaker.failed()
    clock.now = 5.0
    assert breaker.allow()
    assert not breaker.allow()  # only one probe at a time
    breaker.failed()  # the probe failed: open for another cooldown
    assert not breaker.allow()
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    breaker.succeeded()
    assert not breaker.is_open and breaker.allow() and breaker.allow()


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)
