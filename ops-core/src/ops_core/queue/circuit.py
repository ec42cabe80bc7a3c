"""A small circuit breaker for publishing while the broker is down.

Without it every submit during an outage waits for its own connect attempt
(refused at best, a socket timeout of seconds at worst). After
``threshold`` consecutive failures the circuit opens and publishes fail at
once for ``cooldown`` seconds; then one caller is let through as a probe: its
success closes the circuit, its failure opens it for another cooldown.
Failing fast is safe because a failed publish only leaves the task stored and
unpublished, and the workers' relay publishes it once the broker is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class CircuitBreaker:
    def __init__(self, *, threshold: int = 3, cooldown: float = 2.0, clock: Clock = time.monotonic) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        # Publishes run in worker threads (pika is blocking), so state changes take a lock.
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None

    def allow(self) -> bool:
        """Whether a publish may try the broker now (closed, or the one probe after a cooldown)."""
        with self._lock:
            if self._open_until is None:
                return True
            if self._probing or self._clock() < self._open_until:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._probing = False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._open_until is not None or self._failures >= self._threshold:
                self._open_until = self._clock() + self._cooldown
