"""Puts task messages on the broker from async code.

Dramatiq's brokers are blocking (pika), so sends run in a thread: a few
threads owned by the publisher (:mod:`ops_core.queue.send_threads`), not the
loop's default executor. Dramatiq's RabbitmqBroker keeps one pika connection
(and channel) per thread, so a fixed set of threads reuses a fixed set of
connections, and publishing never queues behind (or starves) other
``to_thread`` work. A failed
send raises :class:`BrokerUnavailable`; callers leave the task unpublished in
the database, where the relay finds it again once the broker is back. A
circuit breaker makes sends fail at once while the broker is known to be down,
so an outage does not make every submit wait for a connect attempt.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import dramatiq

from ops_core.errors import BrokerUnavailable
from ops_core.queue.broker import MAX_PRIORITY, RUN_TASK
from ops_core.queue.circuit import CircuitBreaker
from ops_core.queue.send_threads import SendThreads

log = logging.getLogger(__name__)

# Each send waits for RabbitMQ's confirm (about a round trip), so a few threads cover
# hundreds of sends per second; each one is a broker connection.
PUBLISH_THREADS = 4


class Publisher:
    def __init__(
        self,
        broker: dramatiq.Broker,
        queue_name: str,
        *,
        breaker: CircuitBreaker | None = None,
        threads: int = PUBLISH_THREADS,
    ) -> None:
        self._broker = broker
        self._queue_name = queue_name
        self.breaker = breaker or CircuitBreaker()
        # Threads start on the first send, not here: building a publisher has no side effects.
        self._threads = SendThreads(threads, "opscore-publish")

    async def close(self) -> None:
        """Stop the publishing threads once queued sends are done; later publishes fail as unavailable."""
        # Joining threads blocks, and sends in flight may wait for a confirm: not on the loop.
        await asyncio.to_thread(self._threads.close)

    async def publish(self, task_id: UUID, *, priority: int = 0, delay_seconds: float = 0.0) -> None:
        delay_ms = int(delay_seconds * 1000) if delay_seconds > 0 else None
        broker_priority = max(0, min(priority, MAX_PRIORITY))

        def send() -> None:
            # Built in the thread too: the event loop's share of a submit is what limits the API.
            message: dramatiq.Message[None] = dramatiq.Message(
                queue_name=self._queue_name,
                actor_name=RUN_TASK,
                args=(str(task_id),),
                kwargs={},
                options={"broker_priority": broker_priority},
            )
            self._broker.enqueue(message, delay=delay_ms)

        if not self.breaker.allow():
            raise BrokerUnavailable(f"could not publish task {task_id}: the broker is unreachable (circuit open)")
        sent = False
        try:
            await self._threads.run(send)
            sent = True
        except Exception as exc:
            raise BrokerUnavailable(f"could not publish task {task_id}: {exc}") from exc
        finally:
            # Also on cancellation: a probe that never reports would keep the circuit open for good.
            if sent:
                self.breaker.succeeded()
            else:
                self.breaker.failed()
