"""The task store: everything the API and the workers ask of the database, behind one interface.

:class:`TaskStore` states the operations and composes them from the
primitives each backend (``postgres.py``, ``sqlite.py``) writes once, in its
own SQL. The rules both follow (moves checked against the lifecycle's table,
event numbering, fencing, attempt history) are in ``rules.py``; the retry
decision for orphans is the lifecycle's; which driver errors mean "database
unavailable" is ``engine.is_unavailable``.
"""

from __future__ import annotations

import abc
import base64
import binascii
import builtins
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ops_core.db.models import (
    Claim,
    EventHead,
    NewEvent,
    NewTask,
    StatusChange,
    Task,
    TaskEvent,
    TaskPage,
    TaskStats,
    UsageTotal,
    WorkerView,
)
from ops_core.db.rules import (
    CANCEL_PENDING,
    CANCEL_RUNNING,
    CANCEL_WAITING,
    COMPLETE,
    Close,
    Fenced,
    Move,
    Running,
    Usage,
    attempt_error,
    created_event,
    fail_move,
    requeue_move,
    status_event,
    summarised,
    utcnow,
)
from ops_core.domain import ErrorType, EventType
from ops_core.errors import Conflict, InvalidRequest, LeaseLost, RetryLimitReached, TaskFinished, TaskNotFound
from ops_core.lifecycle import CANCELLED, FAILED, PENDING, RUNNING, WAITING, GiveUp, RetryPolicy, TaskStatus
from ops_core.tenancy import TenantScope

# A task no worker holds is cancelled at once, by one of these moves.
_UNCLAIMED: dict[TaskStatus, tuple[Move, str]] = {
    PENDING: (CANCEL_PENDING, "cancelled before it started"),
    WAITING: (CANCEL_WAITING, "cancelled while it waited for approval"),
}

# Each round re-reads the status; a task changes under an operator's request only a few times
# (claim, finish), so running out means something is badly wrong.
MAX_ROUNDS = 10


class TaskStore(abc.ABC):
    """The operations; see the module docstring for the rules every backend follows.

    A caller's operations (create, get, list, list_events, request_cancel,
    retry, usage) name the caller's tenant scope, with no default: another
    tenant's task is not found. The worker's operations name a task it was
    handed and an attempt it owns, and are the system's, for every tenant.
    """

    engine: AsyncEngine

    def __init__(self, engine: AsyncEngine, *, policy: RetryPolicy | None = None) -> None:
        self.engine = engine
        self.policy = policy or RetryPolicy()

    # ---- submission and reads ------------------------------------------------------------------

    async def create(self, new: NewTask) -> tuple[Task, bool]:
        """Insert a pending task; with a known idempotency key return the existing task instead."""
        task = new_task_row(new, utcnow())
        if await self._insert(task, created_event()):
            return task, True
        assert new.idempotency_key is not None, "only an idempotency conflict leaves a task uninserted"
        return await self._by_idempotency_key(new.tenant, new.idempotency_key), False

    @abc.abstractmethod
    async def _insert(self, task: Task, event: NewEvent) -> bool:
        """Insert ``task`` with its first event; False if its tenant's idempotency key is taken."""

    @abc.abstractmethod
    async def _by_idempotency_key(self, tenant: str, key: str) -> Task: ...

    @abc.abstractmethod
    async def get(self, task_id: uuid.UUID, *, tenant: TenantScope) -> Task:
        """The task, or :class:`TaskNotFound` (also for another tenant's task)."""

    @abc.abstractmethod
    async def list(
        self,
        *,
        tenant: TenantScope,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """Newest first, keyset-paginated on (created_at, id) so pages never skip or repeat."""

    @abc.abstractmethod
    async def list_events(
        self, task_id: uuid.UUID, *, tenant: TenantScope, after_seq: int = 0, limit: int = 1000
    ) -> builtins.list[TaskEvent]:
        """Events after ``after_seq`` in seq order; :class:`TaskNotFound` for an unknown task."""

    @abc.abstractmethod
    async def event_heads(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EventHead]:
        """Each task's last event seq and status: one read for every stream a process serves."""

    @abc.abstractmethod
    async def last_event_id(self) -> int:
        """The newest event row's id (0 with none): where a tenant's status stream starts, and its wake-up."""

    @abc.abstractmethod
    async def status_changes(
        self,
        *,
        tenant: TenantScope,
        after_id: int,
        agent: str | None = None,
        status: TaskStatus | None = None,
        limit: int = 500,
    ) -> builtins.list[StatusChange]:
        """The tenant's status events after row ``after_id``, oldest first; ``status`` is the status moved to."""

    @abc.abstractmethod
    async def usage(self, *, tenant: TenantScope, since: datetime) -> builtins.list[UsageTotal]:
        """Token totals of the tasks submitted since ``since``, by tenant, agent and model."""

    @abc.abstractmethod
    async def stats(self, *, tenant: TenantScope, since: datetime, bucket_seconds: int) -> TaskStats:
        """The tasks submitted since ``since``: counts by status now with their queue lag (submission to
        first start), and the finished ones by status per ``bucket_seconds`` of finish time.

        Like :meth:`usage` it reads the tasks by submission time (the index every listing uses): a
        task submitted before ``since`` is not counted, even if it finished after.
        """

    # ---- the outbox ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def due_for_publish(
        self, *, limit: int, now: datetime | None = None, republish_before: datetime | None = None
    ) -> builtins.list[Task]:
        """Pending tasks whose message must be sent: never published and due, or (with
        ``republish_before``) last published before then and still not claimed, in case it was lost."""

    @abc.abstractmethod
    async def mark_published(
        self, task_ids: Sequence[uuid.UUID], *, republished_before: datetime | None = None
    ) -> None:
        """Sent, unless claimed meanwhile; with ``republished_before`` None only never-published rows."""

    # ---- the worker's side ---------------------------------------------------------------------

    async def claim(self, task_id: uuid.UUID, worker_id: str) -> Claim | None:
        """pending → running for one attempt; None if it is not pending (duplicate delivery, cancelled…).

        A task that waited past its schedule-to-start deadline fails instead.
        """
        claim = await self._claim(task_id, worker_id)
        if claim is None:
            await self._fail_unstarted([task_id], utcnow())
        return claim

    @abc.abstractmethod
    async def _claim(self, task_id: uuid.UUID, worker_id: str) -> Claim | None: ...

    async def append_events(self, task_id: uuid.UUID, attempt: int, events: Sequence[NewEvent]) -> None:
        """Append the run's events; raises :class:`LeaseLost` unless ``attempt`` still owns the task."""
        if events and not await self._append(Fenced(task_id=task_id, attempt=attempt, events=events)):
            raise LeaseLost(f"task {task_id}: attempt {attempt} no longer owns it")

    async def save_checkpoint(
        self,
        task_id: uuid.UUID,
        attempt: int,
        checkpoint: dict[str, Any],
        input_tokens: int,
        output_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> None:
        """Store the last finished step so a later attempt resumes from it; add the step's tokens."""
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        write = Fenced(task_id=task_id, attempt=attempt, events=events, usage=usage, checkpoint=checkpoint)
        if not await self._checkpoint(write):
            raise LeaseLost(f"task {task_id}: attempt {attempt} no longer owns it")

    async def complete(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        result: Any,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        """running → completed; False if ``attempt`` no longer owns the task."""
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, reused_tokens=reused_tokens)
        closing = [*events, status_event(COMPLETE, attempt=attempt)]
        return await self._complete(
            Fenced(task_id=task_id, attempt=attempt, events=closing, usage=usage, result=result)
        )

    @abc.abstractmethod
    async def _append(self, write: Fenced) -> bool: ...

    @abc.abstractmethod
    async def _checkpoint(self, write: Fenced) -> bool: ...

    @abc.abstractmethod
    async def _complete(self, write: Fenced) -> bool: ...

    async def fail(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        error_type: str,
        error_message: str,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        now = utcnow()
        return await self._close(
            Close(
                task_id=task_id,
                attempt=attempt,
                move=fail_move(error_type),
                events=events,
                usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens, reused_tokens=reused_tokens),
                error_type=error_type,
                error_message=error_message,
                attempt_error=attempt_error(attempt, error_type, error_message, now),
                extra={"error_type": error_type},
            ),
            now,
        )

    async def schedule_retry(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        error_type: str,
        error_message: str,
        run_after: datetime,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        """running → pending after a retryable failure; the checkpoint stays so the next attempt resumes."""
        if run_after.tzinfo is None:
            raise ValueError(f"naive datetime {run_after!r}: ops-core only stores timezone-aware datetimes")
        now = utcnow()
        return await self._close(
            Close(
                task_id=task_id,
                attempt=attempt,
                move=requeue_move("retry"),
                events=events,
                usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens, reused_tokens=reused_tokens),
                attempt_error=attempt_error(attempt, error_type, error_message, now),
                run_after=run_after,
                extra={"error_type": error_type, "run_after": run_after.isoformat()},
            ),
            now,
        )

    async def finish_cancelled(
        self,
        task_id: uuid.UUID,
        attempt: int,
        *,
        input_tokens: int,
        output_tokens: int,
        reused_tokens: int,
        events: Sequence[NewEvent] = (),
    ) -> bool:
        return await self._close(
            Close(
                task_id=task_id,
                attempt=attempt,
                move=CANCEL_RUNNING,
                events=events,
                usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens, reused_tokens=reused_tokens),
                error_type=ErrorType.CANCELLED.value,
                error_message="cancelled on request",
            ),
            utcnow(),
        )

    async def hand_back(self, task_id: uuid.UUID, attempt: int, *, reason: str) -> bool:
        """running → pending without consuming the attempt (a graceful shutdown is not the task's fault)."""
        close = Close(task_id=task_id, attempt=attempt, move=requeue_move(reason), refund_attempt=True)
        return await self._close(close, utcnow())

    async def _close(self, close: Close, now: datetime) -> bool:
        """Apply ``close`` if ``close.attempt`` still owns the task; whether it did.

        The history is read first and written whole: the write is fenced on the
        attempt, and only a write fenced on the same attempt can change it, so
        no other write can come in between and be lost.
        """
        errors = None
        if close.attempt_error is not None:
            errors = summarised(await self._attempt_errors(close.task_id), close.attempt_error)
        return await self._end(close, errors, now)

    @abc.abstractmethod
    async def _attempt_errors(self, task_id: uuid.UUID) -> builtins.list[dict[str, Any]]:
        """The task's attempt_errors; empty for an unknown task."""

    @abc.abstractmethod
    async def _end(self, close: Close, attempt_errors: builtins.list[dict[str, Any]] | None, now: datetime) -> bool:
        """One write fenced on ``close.attempt``: ``close.move`` with its columns and events, and
        ``attempt_errors`` (when not None) as the new history."""

    # ---- operator actions ------------------------------------------------------------------------

    async def request_cancel(self, task_id: uuid.UUID, *, tenant: TenantScope) -> Task:
        """pending or waiting → cancelled at once; running → flag it (the worker stops the run);
        terminal → TaskFinished."""
        for _ in range(MAX_ROUNDS):
            # The writes below go by id: this read already proved the task is the caller's.
            current = (await self.get(task_id, tenant=tenant)).status
            if current in _UNCLAIMED:
                move, message = _UNCLAIMED[current]
                cancelled = await self._cancel_unclaimed(task_id, move, message, utcnow())
                if cancelled is not None:
                    return cancelled
            elif current is RUNNING:
                flagged = await self._flag_cancel(task_id, utcnow())
                if flagged is not None:
                    return flagged
                again = await self.get(task_id, tenant=tenant)
                if again.status is RUNNING and again.cancel_requested:
                    return again  # a second request adds no event
            else:
                raise TaskFinished(f"task {task_id} is already {current.value}")
        raise Conflict(f"task {task_id} kept changing while it was being cancelled; try again")

    @abc.abstractmethod
    async def _cancel_unclaimed(self, task_id: uuid.UUID, move: Move, message: str, now: datetime) -> Task | None:
        """``move`` (CANCEL_PENDING or CANCEL_WAITING) with ``message``; None if the task moved on."""

    @abc.abstractmethod
    async def _flag_cancel(self, task_id: uuid.UUID, now: datetime) -> Task | None:
        """Set cancel_requested on a running task not yet flagged, with a cancel_requested event."""

    @abc.abstractmethod
    async def cancel_requested(self, task_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these running tasks have a cancel request (one query for all of a worker's runs)."""

    async def retry(self, task_id: uuid.UUID, *, tenant: TenantScope) -> Task:
        """failed|cancelled → pending, with a fresh retry budget (see ``RetryPolicy.renewed_budget``).

        ``attempts`` and ``attempt_errors`` are kept (history), and so is the
        checkpoint, so the new attempt resumes where the last one stopped.
        """
        for _ in range(MAX_ROUNDS):
            task = await self.get(task_id, tenant=tenant)
            if task.status not in (FAILED, CANCELLED):
                raise Conflict(f"task {task_id} is {task.status.value}; only failed or cancelled tasks can be retried")
            if task.manual_retries >= self.policy.max_manual_retries:
                raise RetryLimitReached(
                    f"task {task_id} was already retried by hand {task.manual_retries} times, the most allowed"
                )
            retried = await self._reopen(task, utcnow())
            if retried is not None:
                return retried
        raise Conflict(f"task {task_id} kept changing while it was being retried; try again")

    @abc.abstractmethod
    async def _reopen(self, task: Task, now: datetime) -> Task | None:
        """Apply ``manual_retry_move(task.status)`` if the task is still as read; None otherwise."""

    # ---- crash recovery ----------------------------------------------------------------------------

    async def requeue_orphans(self, *, stale_after: float, caller: str | None = None) -> builtins.list[uuid.UUID]:
        """Running tasks whose worker stopped heartbeating → pending (or failed when out of retries).

        The lost attempt counts. Each task moves with its own write fenced on
        its attempt, so many workers may call this at once: each orphan is
        recovered exactly once. ``caller``, the reaping worker, is alive
        whatever its heartbeat row says: its own runs are never orphans.
        """
        now = utcnow()
        moved: builtins.list[uuid.UUID] = []
        for run in await self._orphans(now - timedelta(seconds=stale_after), caller):
            message = f"worker {run.worker_id} stopped heartbeating during attempt {run.attempt}"
            decision = self.policy.decide(
                attempt=run.attempt, max_retries=run.max_retries, retryable=True, backoff=False
            )
            if await self._recover(run, ErrorType.WORKER_LOST.value, message, give_up=isinstance(decision, GiveUp)):
                moved.append(run.task_id)
        return moved

    async def fail_expired(
        self, now: datetime | None = None, *, grace_seconds: float = 60.0
    ) -> builtins.list[uuid.UUID]:
        """Fail running tasks whose attempt outlived its timeout by ``grace_seconds`` (its worker never did)."""
        now = now or utcnow()
        expired: builtins.list[uuid.UUID] = []
        for run in await self._running():
            if run.claimed_at is None or run.claimed_at + timedelta(seconds=run.timeout_seconds + grace_seconds) >= now:
                continue
            message = f"attempt {run.attempt} ran past its {run.timeout_seconds}s timeout"
            if await self._recover(run, ErrorType.TIMEOUT.value, message, give_up=True, now=now):
                expired.append(run.task_id)
        return expired

    async def _recover(
        self, run: Running, error_type: str, message: str, *, give_up: bool, now: datetime | None = None
    ) -> bool:
        now = now or utcnow()
        event = NewEvent(
            EventType.ATTEMPT_FAILED.value if give_up else EventType.REQUEUED.value,
            {"attempt": run.attempt, "error_type": error_type, "message": message},
        )
        close = Close(
            task_id=run.task_id,
            attempt=run.attempt,
            move=fail_move(error_type) if give_up else requeue_move(error_type),
            events=[event],
            error_type=error_type if give_up else None,
            error_message=message if give_up else None,
            attempt_error=attempt_error(run.attempt, error_type, message, now),
        )
        return await self._close(close, now)

    async def fail_unstarted(self, now: datetime | None = None) -> builtins.list[uuid.UUID]:
        """Fail pending tasks past their schedule-to-start deadline that no worker ever claimed.

        A claim fails such a task when its message arrives; this catches the
        ones whose message never arrives (no worker consumes, the broker is down).
        """
        now = now or utcnow()
        return await self._fail_unstarted(await self._unstarted(now), now)

    @abc.abstractmethod
    async def _orphans(self, cutoff: datetime, caller: str | None) -> builtins.list[Running]:
        """Running attempts whose worker stopped, or last heartbeat (or, unknown, claim) is before ``cutoff``;
        none of ``caller``'s."""

    @abc.abstractmethod
    async def _running(self) -> builtins.list[Running]: ...

    @abc.abstractmethod
    async def _unstarted(self, now: datetime) -> builtins.list[uuid.UUID]:
        """Never-started pending tasks whose start deadline has passed."""

    @abc.abstractmethod
    async def _fail_unstarted(self, task_ids: Sequence[uuid.UUID], now: datetime) -> builtins.list[uuid.UUID]:
        """UNSTARTED for those still pending, never started and past their deadline; the ones moved."""

    # ---- the worker registry -----------------------------------------------------------------------

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raises :class:`DatabaseUnavailable` when the database cannot answer in time."""

    @abc.abstractmethod
    async def register_worker(self, worker_id: str, host: str, pid: int, concurrency: int) -> None: ...

    @abc.abstractmethod
    async def heartbeat(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    async def deregister_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    async def live_workers(self, *, stale_after: float) -> builtins.list[WorkerView]: ...


def new_task_row(new: NewTask, now: datetime) -> Task:
    """The row a submission (or a workflow's step, db/workflows.py) inserts: pending, its first event's seq reserved.

    A delayed task (``run_after``) is not due before then, and its schedule-to-start
    deadline counts from then.
    """
    start = now if new.run_after is None or new.run_after < now else new.run_after
    deadline = None
    if new.schedule_to_start_seconds is not None:
        try:
            deadline = start + timedelta(seconds=new.schedule_to_start_seconds)
        except OverflowError:
            raise InvalidRequest("schedule_to_start_seconds is too large") from None
    return Task(
        id=uuid.uuid4(),
        tenant=new.tenant,
        agent=new.agent,
        goal=new.goal,
        input=new.input,
        model=new.model,
        status=PENDING,
        max_retries=new.max_retries,
        timeout_seconds=new.timeout_seconds,
        schedule_to_start_seconds=new.schedule_to_start_seconds,
        start_deadline=deadline,
        priority=new.priority,
        idempotency_key=new.idempotency_key,
        concurrency_key=new.concurrency_key,
        concurrency_limit=new.concurrency_limit,
        callback_url=new.callback_url,
        run_after=start if start > now else None,
        session_id=new.session_id,
        last_event_seq=1,
        created_at=now,
        updated_at=now,
        workflow_id=new.workflow_id,
    )


def page_of(tasks: builtins.list[Task], limit: int) -> TaskPage:
    """A page from up to ``limit + 1`` tasks read newest first: the extra one says whether more follow."""
    items = tasks[:limit]
    return TaskPage(items, encode_cursor(items[-1]) if len(tasks) > limit and items else None)


def encode_cursor(task: Task) -> str:
    raw = json.dumps([task.created_at.isoformat(), task.id.hex]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = json.loads(raw)
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        # Normalised to UTC here, so a date at the calendar's edge fails now and not in the driver.
        created_at = created_at.astimezone(UTC)
        return created_at, uuid.UUID(hex=task_id)
    except (binascii.Error, ValueError, TypeError, AttributeError, OverflowError, UnicodeDecodeError):
        raise InvalidRequest(f"malformed cursor {cursor[:100]!r}") from None


def not_found(task_id: uuid.UUID) -> TaskNotFound:
    return TaskNotFound(f"task {task_id} not found")
