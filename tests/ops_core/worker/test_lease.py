"""The reap guard: no worker presumes others dead until it has itself been healthy for a full lease."""

from __future__ import annotations

from ops_core.worker.lease import ReapGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_new_worker_waits_a_full_lease_of_healthy_heartbeats() -> None:
    clock = Clock()
    guard = ReapGuard(10, clock=clock)
    assert not guard.may_reap()  # no heartbeat yet
    guard.heartbeat_succeeded()
    clock.now += 9.9
    guard.heartbeat_succeeded()  # later successes do not restart the count
    assert not guard.may_reap()
    clock.now += 0.1
    assert guard.may_reap()


def test_a_failed_heartbeat_restarts_the_wait() -> None:
    clock = Clock()
    guard = ReapGuard(10, clock=clock)
    guard.heartbeat_succeeded()
    clock.now += 60
    assert guard.may_reap()
    guard.heartbeat_failed()  # e.g. the database went away: every heartbeat is going stale
    assert not guard.may_reap()
    clock.now += 60
    assert not guard.may_reap()  # still no successful heartbeat since
    guard.heartbeat_succeeded()
    clock.now += 5
    assert not guard.may_reap()
    clock.now += 5
    assert guard.may_reap()
