"""Holds a worker process's agent runs on one asyncio loop.

The Dramatiq actor only *dispatches*: it waits for a free run slot, claims the
task in the database and hands the run to this loop, then returns so the
message is acked. The run's liveness is the worker's heartbeat in the
database, not an unacked message, so:

* a run of several hours never meets RabbitMQ's ``consumer_timeout`` or a
  Dramatiq time limit;
* one process holds thousands of waiting runs on asyncio instead of a thread each;
* a crashed worker's runs are found by their stale heartbeat and requeued by
  any live worker (``requeue_orphans``), not by the broker.

The same loop runs the periodic duties: heartbeat, cancel polling, recovery
(orphans of dead workers, runs past their timeout whose worker never ended
them, pending tasks past their schedule-to-start deadline) and the outbox
relay that publishes tasks the API stored while the broker was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from ops_core.db.models import Claim, Task
from ops_core.db.store import TaskStore
from ops_core.lease import ReapGuard
from ops_core.queue.actors import DispatchRefused
from ops_core.queue.publisher import Publisher
from ops_core.services.execute import Execution, ExecutionContext

log = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.5
RELAY_BATCH = 500


@dataclass
class _Run:
    execution: Execution
    task: asyncio.Task[None] = field(init=False)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:8]}"


class TaskRunner:
    def __init__(
        self,
        ctx: ExecutionContext,
        publisher: Publisher,
        *,
        concurrency: int,
        worker_id: str | None = None,
        reap_guard: ReapGuard | None = None,
    ) -> None:
        self._ctx = ctx
        self._store: TaskStore = ctx.store
        self._publisher = publisher
        self.worker_id = worker_id or new_worker_id()
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._runs: dict[UUID, _Run] = {}
        self._duties: list[asyncio.Task[None]] = []
        self._closing = False
        self._reap_guard = reap_guard or ReapGuard(ctx.settings.lease_seconds)

    @property
    def in_flight(self) -> int:
        return len(self._runs)

    async def start(self) -> None:
        await self._store.register_worker(self.worker_id, socket.gethostname(), os.getpid(), self._concurrency)
        settings = self._ctx.settings
        self._duties = [
            asyncio.create_task(self._every(settings.heartbeat_seconds, self._heartbeat), name="heartbeat"),
            asyncio.create_task(self._every(CANCEL_POLL_SECONDS, self._poll_cancels), name="cancel-poll"),
            asyncio.create_task(self._every(settings.relay_interval_seconds, self._recover), name="recover"),
            asyncio.create_task(self._every(1.0, self._flush_events), name="flush-events"),
        ]

    async def dispatch(self, raw_task_id: str) -> None:
        """Claim the task and start its run; returns once the run is started (or there is nothing to run)."""
        try:
            task_id = UUID(raw_task_id)
        except ValueError:
            log.error("dropping a message with a malformed task id: %r", raw_task_id)
            return
        if self._closing:
            raise DispatchRefused("worker is shutting down")
        await self._slots.acquire()
        try:
            if self._closing:
                raise DispatchRefused("worker is shutting down")
            claim = await self._store.claim(task_id, self.worker_id)
        except BaseException:
            self._slots.release()
            raise
        if claim is None:
            # Already running elsewhere, finished, cancelled, or a duplicate delivery.
            self._slots.release()
            return
        self._start(claim)

    def _start(self, claim: Claim) -> None:
        run = _Run(execution=Execution(self._ctx, claim, cancelled=asyncio.Event()))
        run.task = asyncio.create_task(self._execute(claim.task.id, run), name=f"task-{claim.task.id}")
        self._runs[claim.task.id] = run

    async def _execute(self, task_id: UUID, run: _Run) -> None:
        try:
            await run.execution.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s: unexpected error in the runner", task_id)
        finally:
            self._runs.pop(task_id, None)
            self._slots.release()

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking work, let runs finish for ``grace_seconds``, then hand the rest back."""
        self._closing = True
        pending = [run.task for run in self._runs.values()]
        if pending:
            log.info("waiting up to %.0fs for %d runs to finish", grace_seconds, len(pending))
            await asyncio.wait(pending, timeout=grace_seconds)
        leftover = list(self._runs.items())
        for task_id, run in leftover:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task
            await self._hand_back(task_id, run)
        for duty in self._duties:
            duty.cancel()
        await asyncio.gather(*self._duties, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._store.deregister_worker(self.worker_id)

    async def _hand_back(self, task_id: UUID, run: _Run) -> None:
        try:
            await run.execution.recorder.flush()
            if await self._store.hand_back(task_id, run.execution.attempt, reason="worker shutdown"):
                await self._publish(await self._store.get(task_id))
        except Exception:
            # The task stays running under a worker that stops heartbeating: another worker requeues it.
            log.exception("task %s: could not hand back; it will be recovered as an orphan", task_id)

    async def republish(self, task: Task, delay_seconds: float) -> None:
        """Publish a task moved back to pending; on failure the relay publishes it when it is due."""
        try:
            await self._publisher.publish(task.id, priority=task.priority, delay_seconds=delay_seconds)
        except Exception as exc:
            log.warning("task %s: republish failed (%s); the relay will retry", task.id, exc)
            return
        await self._store.mark_published([task.id])

    async def _publish(self, task: Task) -> None:
        await self.republish(task, 0.0)

    async def _every(self, seconds: float, duty: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await duty()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A database or broker outage must not kill the duty loops: they resume when it is back.
                log.warning("%s failed: %s", getattr(duty, "__name__", duty), exc)
            await asyncio.sleep(seconds)

    async def _heartbeat(self) -> None:
        try:
            await self._store.heartbeat(self.worker_id)
        except Exception:
            self._reap_guard.heartbeat_failed()
            raise
        self._reap_guard.heartbeat_succeeded()

    async def _poll_cancels(self) -> None:
        if not self._runs:
            return
        for task_id in await self._store.cancel_requested(list(self._runs)):
            run = self._runs.get(task_id)
            if run is not None:
                run.execution.cancelled_event.set()

    async def _flush_events(self) -> None:
        # All at once, so the store sends them as one statement; only runs with events waiting, since
        # each flush is a task of its own and a thousand runs mostly wait on their model.
        flushes = [
            run.execution.recorder.flush() for run in list(self._runs.values()) if run.execution.recorder.pending
        ]
        for outcome in await asyncio.gather(*flushes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def _recover(self) -> None:
        """Settle what no live worker will, then publish every due, unpublished task."""
        lease = self._ctx.settings.lease_seconds
        if self._reap_guard.may_reap():
            # Timeouts first: a run far past its timeout is failed, not given another attempt.
            await self._store.fail_expired(grace_seconds=lease)
            await self._store.requeue_orphans(stale_after=lease)
        await self._store.fail_unstarted()
        # A message can still be lost after a successful publish (dead-lettered, a queue deleted by
        # hand): a task published long ago and never claimed is published again. A duplicate is
        # harmless, the claim is conditional.
        republish_before = datetime.now(UTC) - timedelta(seconds=self._ctx.settings.republish_after_seconds)
        due = await self._store.due_for_publish(limit=RELAY_BATCH, republish_before=republish_before)
        published: list[UUID] = []
        for task in due:
            try:
                await self._publisher.publish(task.id, priority=task.priority)
            except Exception as exc:
                log.warning("relay: broker still unavailable: %s", exc)
                break
            published.append(task.id)
        if published:
            await self._store.mark_published(published, republished_before=republish_before)
