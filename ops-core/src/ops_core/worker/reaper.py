"""Settles what no live worker will: runs of dead workers, runs far past their timeout, tasks never started,
and approvals nobody answered in time.

Any live worker may reap, and many at once: each task moves with a
conditional UPDATE fenced on its attempt, so it is recovered exactly once.
Orphans are presumed dead only when this worker's own heartbeat has been
healthy for a lease (:mod:`ops_core.worker.lease`), and never its own: a
worker running this is alive, however late its heartbeat row (a worker that
requeued its own runs under load ran them again while still running them).

A requeued orphan is published here, at once. Left to the relay it would wait
for the relay's next pass, behind whatever backlog of unpublished tasks the
relay is working through; so a run of a killed worker is running again
within a lease (its heartbeat going stale) plus one reaper interval.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ops_core.config import Settings
from ops_core.db.approvals import ApprovalStore
from ops_core.db.models import Task
from ops_core.db.store import TaskStore
from ops_core.domain import ErrorType
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.lease import ReapGuard
from ops_core.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

Publish = Callable[[Task, float], Awaitable[None]]


class Reaper:
    def __init__(
        self,
        store: TaskStore,
        guard: ReapGuard,
        settings: Settings,
        publish: Publish,
        *,
        worker_id: str,
        approvals: ApprovalStore | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._approvals = approvals
        self._worker_id = worker_id
        self._guard = guard
        self._settings = settings
        self._publish = publish

    async def __call__(self) -> None:
        lease = self._settings.lease_seconds
        if self._guard.may_reap():
            # Timeouts first: a run far past its timeout is failed, not given another attempt.
            await self._store.fail_expired(grace_seconds=lease)
            orphans = await self._store.requeue_orphans(stale_after=lease, caller=self._worker_id)
            if self._metrics is not None:
                self._metrics.orphans(len(orphans))
            for task_id in orphans:
                await self._settle_orphan(await self._store.get(task_id, tenant=EVERY_TENANT))
        # Not a guess about liveness: a deadline that has passed has passed.
        await self._store.fail_unstarted()
        if self._approvals is not None:
            for task in await self._approvals.expire():
                log.info(
                    "task %s: an approval timed out; it resumes with the call denied",
                    task.id,
                    extra={"task_id": str(task.id), "status": task.status.value},
                )
                await self._publish(task, 0.0)

    async def _settle_orphan(self, task: Task) -> None:
        lost = ErrorType.WORKER_LOST.value
        fields = {"task_id": str(task.id), "status": task.status.value, "error_type": lost}
        if task.status is TaskStatus.PENDING:
            log.warning(
                "task %s: its worker stopped heartbeating during attempt %d (%s); retrying now",
                task.id,
                task.attempts,
                lost,
                extra={**fields, "attempt": task.attempts, "retry_in_seconds": 0.0},
            )
            await self._publish(task, 0.0)
        elif task.status is TaskStatus.FAILED:
            log.warning(
                "task %s %s: its worker stopped heartbeating during attempt %d (%s), no retries left",
                task.id,
                task.status.value,
                task.attempts,
                lost,
                extra={**fields, "attempt": task.attempts},
            )
