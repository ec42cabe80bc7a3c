"""The supervisor's restart rule: a dead process comes back, later each time while processes keep dying young."""

from __future__ import annotations

from typing import Any

from ops_core.worker.pool import (
    RESTART_BACKOFF_MAX_SECONDS,
    STABLE_AFTER_SECONDS,
    _Slot,
    _supervise,
    restart_delay,
)


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.alive = True
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        return self.alive

    def close(self) -> None:
        pass

    def die(self, code: int) -> None:
        self.alive, self.exitcode = False, code


def test_the_backoff_doubles_and_is_capped() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert restart_delay(50) == RESTART_BACKOFF_MAX_SECONDS


def test_a_dead_process_is_restarted_after_its_backoff_and_a_long_life_resets_it() -> None:
    spawned: list[FakeProcess] = []

    def spawn() -> Any:
        spawned.append(FakeProcess(100 + len(spawned)))
        return spawned[-1]

    first = FakeProcess(1)
    slot = _Slot(first, started=0.0)  # type: ignore[arg-type]
    _supervise(slot, 5.0, spawn)
    assert spawned == []  # alive: nothing to do

    first.die(-9)
    _supervise(slot, 5.0, spawn)  # died young: wait restart_delay(1)
    assert spawned == [] and slot.restart_at == 5.0 + restart_delay(1)
    _supervise(slot, 6.0, spawn)
    assert len(spawned) == 1 and slot.process is spawned[0]

    spawned[0].die(70)
    _supervise(slot, 7.0, spawn)  # young again: the wait doubles
    assert slot.restart_at == 7.0 + restart_delay(2)
    _supervise(slot, 9.0, spawn)
    assert len(spawned) == 2

    spawned[1].die(1)
    later = 9.0 + STABLE_AFTER_SECONDS
    _supervise(slot, later, spawn)  # it had lived long: back to the first step
    assert slot.restart_at == later + restart_delay(1)
