"""Publishing through the circuit breaker: an outage makes sends fail at once instead of each waiting."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest

from ops_core.errors import BrokerUnavailable
from ops_core.queue.circuit import CircuitBreaker
from ops_core.queue.publisher import Publisher


class DownBroker:
    """Stands in for a broker whose every send fails, counting the attempts that reached it."""

    def __init__(self) -> None:
        self.attempts = 0
        self.up = False

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> None:
        self.attempts += 1
        if not self.up:
            raise ConnectionError("connection refused")


async def test_an_open_circuit_fails_publishes_without_trying_the_broker() -> None:
    broker = DownBroker()
    clock = [0.0]
    publisher = Publisher(
        broker,  # type: ignore[arg-type]
        "q",
        breaker=CircuitBreaker(threshold=2, cooldown=3, clock=lambda: clock[0]),
    )
    for _ in range(5):
        with pytest.raises(BrokerUnavailable):
            await publisher.publish(uuid.uuid4())
    assert broker.attempts == 2

    broker.up = True
    clock[0] = 3.0  # the cooldown passed: the next publish is the probe, and it closes the circuit
    await publisher.publish(uuid.uuid4())
    await publisher.publish(uuid.uuid4())
    assert broker.attempts == 4 and not publisher.breaker.is_open
