"""Task statuses and the transitions between them.

The store enforces each transition with a conditional UPDATE (``WHERE status
= <from>``), so a message delivered twice, or a late worker, can never move a
task that has already moved on.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

TRANSITIONS: frozenset[tuple[TaskStatus, TaskStatus]] = frozenset(
    {
        (TaskStatus.PENDING, TaskStatus.RUNNING),  # a worker claims it
        (TaskStatus.PENDING, TaskStatus.CANCELLED),  # cancelled before it started
        (TaskStatus.PENDING, TaskStatus.FAILED),  # waited in the queue past its schedule-to-start timeout
        (TaskStatus.RUNNING, TaskStatus.COMPLETED),
        (TaskStatus.RUNNING, TaskStatus.FAILED),
        (TaskStatus.RUNNING, TaskStatus.CANCELLED),  # cooperative cancel took effect
        (TaskStatus.RUNNING, TaskStatus.PENDING),  # retry after a retryable failure, crash recovery, hand-back
        (TaskStatus.FAILED, TaskStatus.PENDING),  # manual retry (replay of a dead letter)
        (TaskStatus.CANCELLED, TaskStatus.PENDING),  # manual retry
    }
)


def can_transition(current: TaskStatus, target: TaskStatus) -> bool:
    return (current, target) in TRANSITIONS


class ErrorType(StrEnum):
    """The ``error.type`` of a failed task: stable, machine-readable."""

    STEP_LIMIT = "step_limit"
    USAGE_LIMIT = "usage_limit"
    MODEL_ERROR = "model_error"
    TOOL_ERROR = "tool_error"
    POLICY_DENIED = "policy_denied"
    INVALID_OUTPUT = "invalid_output"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    SCHEDULE_TO_START_TIMEOUT = "schedule_to_start_timeout"
    AGENT_ERROR = "agent_error"
    WORKER_LOST = "worker_lost"
    INTERNAL = "internal"


class EventType(StrEnum):
    """Task event types. The agent's own step events keep agentkit's names."""

    STATUS = "status"
    MODEL_REQUEST = "model_request"
    MODEL_RESPONSE = "model_response"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    POLICY_DECISION = "policy_decision"
    FINAL_ANSWER = "final_answer"
    ERROR = "error"
    RESUMED = "resumed"
    ATTEMPT_FAILED = "attempt_failed"
    REQUEUED = "requeued"
    CANCEL_REQUESTED = "cancel_requested"
