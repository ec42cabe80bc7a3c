"""The single actor ops-core declares: run the task whose id the message carries.

The actor is built with :class:`dramatiq.Actor` against an explicit broker,
not with the ``@actor`` decorator, so nothing binds to Dramatiq's global broker
at import time. The message carries only the task id: everything else is read
from the database when the task is claimed, so a stale or duplicated message
can never run outdated input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dramatiq

from ops_core.errors import DatabaseUnavailable
from ops_core.queue.broker import RUN_TASK

Dispatch = Callable[[str], Awaitable[None]]


class DispatchRefused(dramatiq.Retry):
    """The worker is stopping: the message goes back to the queue.

    A :class:`dramatiq.Retry`, so Dramatiq treats it as the planned thing it
    is: no error and no traceback in the log (its Retries middleware notes the
    requeue at INFO). The message comes back after the dispatch backoff, not at
    once: a stopping worker still consumes until Dramatiq stops its threads, and
    a message sent back at once would come straight back to it, round and round.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


def _retry_dispatch(retries: int, exc: BaseException) -> bool:
    # Only an unreachable database is worth another delivery; anything else is
    # a bug that retrying would repeat.
    return isinstance(exc, DatabaseUnavailable | DispatchRefused)


def declare_run_task(broker: dramatiq.Broker, queue_name: str, dispatch: Dispatch) -> dramatiq.Actor[[str], None]:
    async def run_task(task_id: str) -> None:
        await dispatch(task_id)

    run_task.__module__ = __name__
    return dramatiq.Actor(
        run_task,
        broker=broker,
        actor_name=RUN_TASK,
        queue_name=queue_name,
        priority=0,
        options={
            "retry_when": _retry_dispatch,
            # The run itself happens after the actor returns (see worker/runner.py);
            # the actor only claims, so it never needs Dramatiq's time limit.
            "time_limit": 60_000,
        },
    )
