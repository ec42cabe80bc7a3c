"""Holds a worker process's agent runs on one asyncio loop.

The Dramatiq actor only *dispatches*: it waits for a free run slot, claims the
task in the database and hands the run to this loop, then returns so the
message is acked. The run's liveness is the worker's heartbeat in the
database, not an unacked message, so:

* a run of several hours never meets RabbitMQ's ``consumer_timeout`` or a
  Dramatiq time limit;
* one process holds thousands of waiting runs on asyncio instead of a thread each;
* a crashed worker's runs are found by their stale heartbeat and requeued by
  any live worker (:mod:`ops_core.worker.reaper`), not by the broker.

Around the runs: the heartbeat (its own thread, :mod:`~ops_core.worker.heartbeat`),
the loop watchdog (:mod:`~ops_core.worker.watchdog`), and on the loop the
periodic duties, one module each: cancel poll, event flush, reaper, relay, schedule ticker, webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from ops_core.db.models import Claim, Task
from ops_core.db.schedules import ScheduleStore
from ops_core.db.store import TaskStore
from ops_core.db.webhooks import WebhookStore
from ops_core.live import LIVE_SECONDS
from ops_core.queue.actors import DispatchRefused
from ops_core.queue.publisher import Publisher
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.cancel_poll import CANCEL_POLL_SECONDS, CancelPoll
from ops_core.worker.execute import Execution, ExecutionContext
from ops_core.worker.flush import FLUSH_SECONDS, EventFlush
from ops_core.worker.heartbeat import Heartbeat
from ops_core.worker.lease import ReapGuard
from ops_core.worker.periodic import every
from ops_core.worker.reaper import Reaper
from ops_core.worker.relay import Relay
from ops_core.worker.scheduler import ScheduleTicker
from ops_core.worker.watchdog import LoopWatchdog, stall_limit
from ops_core.worker.webhooks import WebhookDuty
from ops_core.worker.workflow_sweep import WorkflowSweep

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "worker shutdown"


@dataclass
class _Run:
    execution: Execution
    task: asyncio.Task[None] = field(init=False)

    def request_cancel(self) -> None:
        self.execution.cancelled_event.set()


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
        heartbeat: Heartbeat | None = None,
        exit_on_stall: bool = True,
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
        # Claims under way, which shutdown waits for: a claim that lands after it must be handed back.
        self._claiming = 0
        self._claims_done = asyncio.Event()
        self._claims_done.set()
        settings = ctx.settings
        self._reap_guard = reap_guard or ReapGuard(settings.lease_seconds)
        self._heartbeat = heartbeat or Heartbeat(settings, self.worker_id, self._reap_guard)
        self._exit_on_stall = exit_on_stall
        self._watchdog: LoopWatchdog | None = None
        self.cancel_poll = CancelPoll(self._store, self._runs)
        self.flush_events = EventFlush(lambda: [run.execution.recorder for run in list(self._runs.values())])
        self.reaper = Reaper(
            self._store,
            self._reap_guard,
            settings,
            self.republish,
            worker_id=self.worker_id,
            approvals=ctx.approvals,
            metrics=ctx.metrics,
        )
        self.relay = Relay(self._store, publisher, settings)
        self.webhooks = WebhookDuty(WebhookStore.from_settings(self._store.engine, settings), settings)
        self.schedules = ScheduleTicker(
            ScheduleStore(self._store.engine), self._store, publisher, ctx.registry, settings, workflows=ctx.workflows
        )

    @property
    def in_flight(self) -> int:
        return len(self._runs)

    async def start(self) -> None:
        await self._store.register_worker(self.worker_id, socket.gethostname(), os.getpid(), self._concurrency)
        settings = self._ctx.settings
        self._heartbeat.start()
        self._watchdog = LoopWatchdog(
            asyncio.get_running_loop(),
            stall_limit(settings.lease_seconds),
            describe=self._describe_runs,
            exit_process=self._exit_on_stall,
        )
        self._watchdog.start()
        self._duties = [
            asyncio.create_task(every(CANCEL_POLL_SECONDS, self.cancel_poll, "cancel poll"), name="cancel-poll"),
            asyncio.create_task(every(FLUSH_SECONDS, self.flush_events, "event flush"), name="flush-events"),
            asyncio.create_task(every(settings.relay_interval_seconds, self.reaper, "reaper"), name="reaper"),
            asyncio.create_task(every(settings.relay_interval_seconds, self.relay, "relay"), name="relay"),
            asyncio.create_task(every(settings.webhook_poll_seconds, self.webhooks, "webhooks"), name="webhooks"),
            asyncio.create_task(
                every(settings.schedule_interval_seconds, self.schedules, "schedule ticker"), name="schedules"
            ),
        ]
        if self._ctx.workflows is not None:
            sweep = WorkflowSweep(self._ctx.workflows)
            self._duties.append(
                asyncio.create_task(every(settings.relay_interval_seconds, sweep, "workflow sweep"), name="workflows")
            )
        if self._ctx.live is not None:
            self._duties.append(asyncio.create_task(every(LIVE_SECONDS, self._ctx.live, "live text"), name="live"))
        if self._ctx.remote is not None:
            watch = every(settings.relay_interval_seconds, self._ctx.remote, "remote agents")
            self._duties.append(asyncio.create_task(watch, name="remote-agents"))

    def _describe_runs(self) -> str:
        ids = [str(task_id) for task_id in list(self._runs)]
        return ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "") if ids else "none"

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
        if self._closing:
            self._slots.release()
            raise DispatchRefused("worker is shutting down")
        self._claiming += 1
        self._claims_done.clear()
        try:
            claim = await self._store.claim(task_id, self.worker_id)
        except BaseException:
            self._slots.release()
            raise
        finally:
            self._claiming -= 1
            if not self._claiming:
                self._claims_done.set()
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
            log.exception("task %s: unexpected error in the runner", task_id, extra={"task_id": str(task_id)})
        finally:
            self._runs.pop(task_id, None)
            self._slots.release()

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop taking work, let runs finish for ``grace_seconds``, then hand the rest back."""
        self._closing = True
        await self._claims_done.wait()
        pending = [run.task for run in self._runs.values()]
        if pending:
            log.info("stopping: waiting up to %.0fs for %d runs to finish", grace_seconds, len(pending))
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
        await self.webhooks.aclose()
        if self._watchdog is not None:
            self._watchdog.stop()
        await asyncio.to_thread(self._heartbeat.stop)
        with contextlib.suppress(Exception):
            await self._store.deregister_worker(self.worker_id)

    async def _hand_back(self, task_id: UUID, run: _Run) -> None:
        attempt = run.execution.attempt
        try:
            await run.execution.recorder.flush()
            if await self._store.hand_back(task_id, attempt, reason=SHUTDOWN_REASON):
                log.info(
                    "task %s: handed back at shutdown (attempt %d not counted); it runs again on the next worker",
                    task_id,
                    attempt,
                    extra={"task_id": str(task_id), "attempt": attempt, "status": "pending"},
                )
                await self.republish(await self._store.get(task_id, tenant=EVERY_TENANT), 0.0)
        except Exception:
            # The task stays running under a worker that stops heartbeating: another worker requeues it.
            log.exception(
                "task %s: could not hand back; it will be recovered as an orphan",
                task_id,
                extra={"task_id": str(task_id), "attempt": attempt},
            )

    async def republish(self, task: Task, delay_seconds: float) -> None:
        """Publish a task moved back to pending; on failure the relay publishes it when it is due."""
        try:
            await self._publisher.publish(task.id, priority=task.priority, delay_seconds=delay_seconds)
        except Exception as exc:
            log.warning("task %s: republish failed (%s); the relay will retry", task.id, exc)
            return
        await self._store.mark_published([task.id])
