"""The rules both store backends share: the moves, event numbering, and what a write carries.

* **moves**: every status change a write makes is a :class:`Move`, checked
  against the lifecycle's table when it is defined; a backend enforces it as a
  conditional UPDATE on the move's source status;
* **event sequence numbers**: the UPDATE that changes a task adds the number
  of events it brings to ``last_event_seq``, and the events take the numbers
  just reserved, in order (:func:`event_seqs`). Reserving them in the row
  being updated serialises concurrent writers on its row lock;
* **fencing**: a worker's writes (:class:`Fenced`, :class:`Close`) match
  ``status = 'running' AND attempts = <its attempt>``, so a zombie from an
  earlier attempt can never write;
* **attempt history**: bounded entries, the oldest folded into a summary;
* **slots**: a task belongs to up to two *groups*, each with a running limit:
  its tenant, when the tenant has ``max_running``, and its tenant's
  ``concurrency_key``, when it has one (limit: its ``concurrency_limit``). Two
  tenants' equal keys are different groups. Within a group, a task's *place*
  is its rank among the group's pending, due tasks by ``(created_at, id)``.
  A keyed task is *key-eligible* iff ``running(key) + place(key) <= its limit``.
  A task is claimable iff, for each of its groups,

  - key: ``running(key) + ahead(key) < concurrency_limit``, where ahead counts
    the key's older pending due tasks;
  - tenant: ``running(tenant) + ahead(tenant) < max_running``, where ahead
    counts the tenant's older pending due tasks that are keyless or
    key-eligible. A task its key blocks takes no tenant slot, so a busy key
    never holds back the tenant's other tasks (no head-of-line blocking).
    (A key belongs to one tenant, so the key's own ahead needs no such
    filter: an older task its tenant blocks blocks every younger one too.)

  Tasks of one key may name different limits; each is checked against its own.
  A session's tasks share an internal key, limit 1, that no client key can
  spell (db/sessions.py). Such a key is *strict*: its waiting tasks count as
  running, and its pending tasks count as ahead whether due or not (a task
  waiting for its retry's backoff keeps its place), so a session's task starts
  only once every older task of the session has finished.
  ``running`` counts status ``running`` only: a waiting or finished task frees
  its slot. A task that is not claimable is *held*: it stays pending with
  ``published_at`` set to HELD_AT, acknowledging its message, so it neither
  spins nor holds a worker slot, and is never failed for it. The relay
  publishes, oldest first, exactly the tasks that are claimable now, so held
  tasks start as slots free, also when nothing new arrives. Each check and its
  claim are one serialised step per group (advisory locks in PostgreSQL,
  taken tenant first, then key; SQLite has one writer), so the limits hold
  across every worker. Tasks in no group take the batched claim, untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops_core.db.models import NewEvent
from ops_core.domain import ErrorType, EventType
from ops_core.lifecycle import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, WAITING, TaskStatus, check

# An attempt error's message is kept whole in error_message; the history keeps a bounded copy.
MAX_ERROR_MESSAGE_CHARS = 2000
# attempt_errors keeps this many entries; older ones fold into a summary entry at the front.
MAX_ATTEMPT_ERRORS = 20


# A task's worker_id while a remote agent holds its attempt (db/remote.py): no worker's heartbeat
# speaks for it, so the orphan reaper of both backends leaves it to the remote lease and the timeout.
REMOTE_WORKER_PREFIX = "remote:"

# A held task's published_at: long ago, so the relay (which republishes what was published before its
# cutoff) takes it once it has its slots, and a late publish mark (which marks only rows never
# published) leaves it alone.
HELD_AT = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Move:
    """A status change a store write makes, checked against the lifecycle's table when defined."""

    source: TaskStatus
    to: TaskStatus
    reason: str

    def __post_init__(self) -> None:
        check(self.source, self.to)


CLAIM = Move(PENDING, RUNNING, "claimed")
COMPLETE = Move(RUNNING, COMPLETED, "completed")
CANCEL_RUNNING = Move(RUNNING, CANCELLED, "cancelled")
CANCEL_PENDING = Move(PENDING, CANCELLED, "cancel_requested")
CANCEL_WAITING = Move(WAITING, CANCELLED, "cancel_requested")
SUSPEND = Move(RUNNING, WAITING, "approval_required")
RESUME = Move(WAITING, PENDING, "approvals_decided")
UNSTARTED = Move(PENDING, FAILED, ErrorType.SCHEDULE_TO_START_TIMEOUT.value)


def fail_move(error_type: str) -> Move:
    return Move(RUNNING, FAILED, error_type)


def requeue_move(reason: str) -> Move:
    return Move(RUNNING, PENDING, reason)


def manual_retry_move(source: TaskStatus) -> Move:
    return Move(source, PENDING, "manual_retry")


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Tokens a write *adds*: what the run spent since its previous write, so every attempt's usage,
    including one that crashed after a checkpoint, is counted exactly once."""

    input_tokens: int = 0
    output_tokens: int = 0
    reused_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Fenced:
    """A worker's write while its attempt owns the task: events, plus a checkpoint or a completion."""

    task_id: uuid.UUID
    attempt: int
    events: Sequence[NewEvent]
    usage: Usage = Usage()
    checkpoint: dict[str, Any] | None = None
    result: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """A running attempt ends without completing: failed, cancelled, or back to pending."""

    task_id: uuid.UUID
    attempt: int
    move: Move
    events: Sequence[NewEvent] = ()
    usage: Usage = Usage()
    error_type: str | None = None
    error_message: str | None = None
    # Appended to attempt_errors when set.
    attempt_error: dict[str, Any] | None = None
    run_after: datetime | None = None
    # A graceful hand-back gives the attempt back.
    refund_attempt: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def all_events(self) -> list[NewEvent]:
        return [*self.events, status_event(self.move, attempt=self.attempt, **self.extra)]


@dataclass(frozen=True, slots=True)
class Running:
    """A running attempt, as the reaper sees it."""

    task_id: uuid.UUID
    attempt: int
    max_retries: int
    worker_id: str | None
    claimed_at: datetime | None
    timeout_seconds: int


def utcnow() -> datetime:
    return datetime.now(UTC)


def status_event(move: Move, **extra: Any) -> NewEvent:
    return NewEvent(
        EventType.STATUS.value, {"from": move.source.value, "to": move.to.value, "reason": move.reason, **extra}
    )


def created_event() -> NewEvent:
    """A task's first event: it is born pending, which is no transition."""
    return NewEvent(EventType.STATUS.value, {"from": None, "to": PENDING.value, "reason": "created"})


def event_seqs(last_event_seq: int, count: int) -> range:
    """The seqs of ``count`` events written by the UPDATE that left ``last_event_seq`` on the row."""
    return range(last_event_seq - count + 1, last_event_seq + 1)


def attempt_error(attempt: int, error_type: str, message: str, at: datetime) -> dict[str, Any]:
    return {"attempt": attempt, "type": error_type, "message": message[:MAX_ERROR_MESSAGE_CHARS], "at": at.isoformat()}


def summarised(errors: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``errors`` plus ``entry``, the oldest folded into one summary entry past :data:`MAX_ATTEMPT_ERRORS`."""
    kept = [*errors, entry]
    if len(kept) <= MAX_ATTEMPT_ERRORS:
        return kept
    head, tail = kept[: len(kept) - MAX_ATTEMPT_ERRORS + 1], kept[len(kept) - MAX_ATTEMPT_ERRORS + 1 :]
    folded = sum(e.get("folded", 1) for e in head)
    first = head[0].get("first_attempt", head[0].get("attempt"))
    last = head[-1].get("attempt")
    summary = {
        "type": "summary",
        "folded": folded,
        "first_attempt": first,
        "attempt": last,
        "message": f"{folded} earlier attempt errors (attempts {first} to {last}) are summarised",
        "at": head[-1].get("at"),
    }
    return [summary, *tail]
