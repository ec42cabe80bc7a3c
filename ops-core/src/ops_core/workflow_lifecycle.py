"""A workflow's life and its steps': the statuses, the transitions between them, and what happens next.

The workflow store (``db/workflows.py``) enforces each transition with a
conditional UPDATE whose ``WHERE status IN (...)`` comes from :func:`sources`,
and asks :func:`plan` what a workflow's steps call for, given where their
tasks stand. Nothing else decides it.

::

    workflow:  running ──▶ completed     every step done (a continue_on_failure step may have failed)
                  │  ├───▶ failed        a step failed or was cancelled: what has not started is skipped,
                  │  │                   what runs is cancelled
                  │  └───▶ cancelled     on request: every step is cancelled or skipped

    step:      blocked ──▶ started ──▶ completed | failed | cancelled   (its task's terminal status)
                  └──────▶ skipped       the workflow ended before the step could start

A step starts when each of its parents completed, or failed (or was
cancelled) with ``continue_on_failure``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ops_core.lifecycle import TaskStatus


class WorkflowStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self is not WorkflowStatus.RUNNING


class StepStatus(StrEnum):
    BLOCKED = "blocked"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


W = WorkflowStatus
S = StepStatus

WORKFLOW_TRANSITIONS: frozenset[tuple[WorkflowStatus, WorkflowStatus]] = frozenset(
    {
        (W.RUNNING, W.COMPLETED),
        (W.RUNNING, W.FAILED),
        (W.RUNNING, W.CANCELLED),
    }
)

STEP_TRANSITIONS: frozenset[tuple[StepStatus, StepStatus]] = frozenset(
    {
        (S.BLOCKED, S.STARTED),  # its parents are done: its task is created
        (S.BLOCKED, S.SKIPPED),  # the workflow failed or was cancelled first
        (S.STARTED, S.COMPLETED),
        (S.STARTED, S.FAILED),
        (S.STARTED, S.CANCELLED),
    }
)

# A started step settles with its task's terminal status.
SETTLED_AS: Mapping[TaskStatus, StepStatus] = {
    TaskStatus.COMPLETED: S.COMPLETED,
    TaskStatus.FAILED: S.FAILED,
    TaskStatus.CANCELLED: S.CANCELLED,
}


class IllegalTransition(ValueError):
    """A write asked for a move the tables do not allow: a bug in the caller, never user input."""


def check_workflow(current: WorkflowStatus, target: WorkflowStatus) -> None:
    if (current, target) not in WORKFLOW_TRANSITIONS:
        raise IllegalTransition(f"a workflow cannot go from {current.value} to {target.value}")


def check_step(current: StepStatus, target: StepStatus) -> None:
    if (current, target) not in STEP_TRANSITIONS:
        raise IllegalTransition(f"a workflow step cannot go from {current.value} to {target.value}")


def workflow_sources(target: WorkflowStatus) -> frozenset[WorkflowStatus]:
    return frozenset(current for current, to in WORKFLOW_TRANSITIONS if to is target)


def step_sources(target: StepStatus) -> frozenset[StepStatus]:
    return frozenset(current for current, to in STEP_TRANSITIONS if to is target)


# ---- what happens next ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    """One step as the store reads it: its row, and its task's status (None before it started)."""

    name: str
    status: StepStatus
    depends_on: Sequence[str]
    continue_on_failure: bool = False
    task_id: uuid.UUID | None = None
    task_status: TaskStatus | None = None
    task_cancel_requested: bool = False
    task_error: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The moves one look at a workflow calls for, all to be written in one transaction."""

    settle: dict[str, StepStatus] = field(default_factory=dict)
    start: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    # Tasks of started steps to cancel (the workflow ended while they were unfinished).
    cancel: list[uuid.UUID] = field(default_factory=list)
    # The workflow's new status, and why; None: it stays as it is.
    status: WorkflowStatus | None = None
    reason: str | None = None

    @property
    def changes_anything(self) -> bool:
        return bool(self.settle or self.start or self.skip or self.status)


def _done(status: StepStatus, continue_on_failure: bool) -> bool:
    """Whether a step's dependents may start after it."""
    if status is S.COMPLETED:
        return True
    return continue_on_failure and status in (S.FAILED, S.CANCELLED)


def plan(status: WorkflowStatus, steps: Sequence[StepState]) -> Plan:
    """What ``steps`` call for in a workflow that is ``status``."""
    settle: dict[str, StepStatus] = {}
    now: dict[str, StepStatus] = {}
    for step in steps:
        current = step.status
        if current is S.STARTED and step.task_status is not None and step.task_status.is_terminal:
            current = SETTLED_AS[step.task_status]
            settle[step.name] = current
        now[step.name] = current
    if status is W.RUNNING:
        broken = [step for step in steps if now[step.name] in (S.FAILED, S.CANCELLED) and not step.continue_on_failure]
        if not broken:
            by_name = {step.name: step for step in steps}
            start = [
                step.name
                for step in steps
                if now[step.name] is S.BLOCKED
                and all(_done(now[parent], by_name[parent].continue_on_failure) for parent in step.depends_on)
            ]
            finished = all(_done(now[step.name], step.continue_on_failure) for step in steps)
            if finished:
                return Plan(settle=settle, status=W.COMPLETED, reason="every step is done")
            return Plan(settle=settle, start=start)
        first = broken[0]
        detail = f": {first.task_error}" if first.task_error else ""
        reason = f"step {first.name!r} {now[first.name].value}{detail}"
        return _ending(steps, now, settle, W.FAILED, reason)
    return _ending(steps, now, settle, None, None)


def _ending(
    steps: Sequence[StepState],
    now: Mapping[str, StepStatus],
    settle: dict[str, StepStatus],
    status: WorkflowStatus | None,
    reason: str | None,
) -> Plan:
    """A workflow that ends (or has ended): skip what never started, cancel what still runs."""
    skip = [step.name for step in steps if now[step.name] is S.BLOCKED]
    cancel = [
        step.task_id
        for step in steps
        if now[step.name] is S.STARTED
        and step.task_id is not None
        and step.task_status is not None
        and not step.task_status.is_terminal
        and not step.task_cancel_requested
    ]
    return Plan(settle=settle, skip=skip, cancel=cancel, status=status, reason=reason)
