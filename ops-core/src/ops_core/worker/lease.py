"""When a worker may presume other workers dead.

A worker whose heartbeat is older than the lease is presumed dead and its
tasks are requeued. After a database outage longer than the lease, though,
*every* heartbeat is stale: the first worker to reconnect would requeue the
runs of workers that are alive and simply have not written their next
heartbeat yet. So a worker only reaps once its own heartbeats have succeeded
without a break for a full lease: by then every live worker has had the same
chance to heartbeat. The same holds for a freshly started worker, which
cannot know whether an outage has just ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class ReapGuard:
    def __init__(self, lease_seconds: float, *, clock: Clock = time.monotonic) -> None:
        self._lease = lease_seconds
        self._clock = clock
        self._healthy_since: float | None = None

    def heartbeat_succeeded(self) -> None:
        if self._healthy_since is None:
            self._healthy_since = self._clock()

    def heartbeat_failed(self) -> None:
        self._healthy_since = None

    def may_reap(self) -> bool:
        return self._healthy_since is not None and self._clock() - self._healthy_since >= self._lease
