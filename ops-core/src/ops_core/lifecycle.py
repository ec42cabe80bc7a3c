"""A task's life: its statuses, the transitions between them, and the retry decision.

Everything that moves a task (the store's writes, the attempt executor, the
reaper, cancel and manual retry) asks here what is allowed; nothing else
decides it. The store enforces each transition with a conditional UPDATE whose
``WHERE status IN (...)`` comes from :func:`sources`, so a message delivered
twice, or a late worker, can never move a task that has already moved on.

::

    pending ──claim──▶ running ──▶ completed
       │                 │  ├────▶ failed ──manual retry──▶ pending
       │                 │  └────▶ cancelled ─manual retry─▶ pending
       │                 ├──retry / worker lost / hand-back──▶ pending
       │                 └──approval required──▶ waiting ──every call decided──▶ pending
       │                                            └──cancel──▶ cancelled
       ├──cancel──▶ cancelled
       └──schedule-to-start timeout──▶ failed

A waiting task holds no worker and no lease: nothing reaps it, and the
attempt that asked is given back (it did not fail).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ops_core.config import Settings


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


PENDING, RUNNING, WAITING = TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.WAITING
COMPLETED, FAILED, CANCELLED = TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED

TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

TRANSITIONS: frozenset[tuple[TaskStatus, TaskStatus]] = frozenset(
    {
        (PENDING, RUNNING),  # a worker claims it
        (PENDING, CANCELLED),  # cancelled before it started
        (PENDING, FAILED),  # waited in the queue past its schedule-to-start timeout
        (RUNNING, COMPLETED),
        (RUNNING, FAILED),
        (RUNNING, CANCELLED),  # cooperative cancel took effect
        (RUNNING, PENDING),  # retry after a retryable failure, crash recovery, hand-back
        (RUNNING, WAITING),  # a tool call needs a person's approval: checkpointed, the worker slot freed
        (WAITING, PENDING),  # every call waited on is decided (or timed out): resumes on any worker
        (WAITING, CANCELLED),
        (FAILED, PENDING),  # manual retry (replay of a dead letter)
        (CANCELLED, PENDING),  # manual retry
    }
)


class IllegalTransition(ValueError):
    """A write asked for a move the table does not allow: a bug in the caller, never user input."""


def check(current: TaskStatus, target: TaskStatus) -> None:
    if (current, target) not in TRANSITIONS:
        raise IllegalTransition(f"a task cannot go from {current.value} to {target.value}")


def sources(target: TaskStatus) -> frozenset[TaskStatus]:
    """The statuses a task may be in when it moves to ``target``."""
    return frozenset(current for current, to in TRANSITIONS if to is target)


# ---- the retry decision ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the task again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No retry: the task fails with the attempt's error."""

    reason: str


Decision = Retry | GiveUp


def retries_exhausted(attempt: int, max_retries: int) -> bool:
    """A task runs at most ``max_retries + 1`` attempts; the first is not a retry."""
    return attempt > max_retries


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, never sooner than the provider's Retry-After.

    ``max_manual_retries`` bounds how often an operator may send one task back
    to pending (each manual retry renews its retry budget), so its history of
    attempts stays bounded.
    """

    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    max_manual_retries: int = 10
    uniform: Callable[[float, float], float] = random.uniform

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            backoff_seconds=settings.retry_backoff_seconds,
            backoff_max_seconds=settings.retry_backoff_max_seconds,
            max_manual_retries=settings.max_manual_retries,
        )

    def decide(
        self,
        *,
        attempt: int,
        max_retries: int,
        retryable: bool,
        retry_after: float | None = None,
        backoff: bool = True,
    ) -> Decision:
        """What to do after ``attempt`` failed.

        ``backoff=False`` requeues at once: a lost worker is not the task's
        fault, and its next attempt should not wait for an error that never was.
        """
        if not retryable:
            return GiveUp("the error is not retryable")
        if retries_exhausted(attempt, max_retries):
            return GiveUp(f"no retries left after attempt {attempt} (max_retries={max_retries})")
        if not backoff:
            return Retry(0.0)
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        delay = self.uniform(ceiling / 2, ceiling)
        return Retry(max(delay, retry_after or 0.0))

    def renewed_budget(self, *, attempts: int, max_retries: int, retry_base: int) -> tuple[int, int]:
        """``(max_retries, retry_base)`` after a manual retry: the configured retries again, on top of
        the attempts already used (``retry_base`` keeps the configured value recoverable)."""
        return attempts + max_retries - retry_base, attempts


# Dispatch (claiming a delivered message) is retried by Dramatiq only for infrastructure faults: the
# database was briefly unreachable, or the worker was stopping. The task's own retries are above.
DISPATCH_MAX_RETRIES = 10_000
DISPATCH_MIN_BACKOFF_MS = 500
DISPATCH_MAX_BACKOFF_MS = 15_000
