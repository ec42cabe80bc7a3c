"""The vocabulary of a task's record: its error types and event types (statuses live in lifecycle.py)."""

from __future__ import annotations

from enum import StrEnum


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
    QUOTA_EXCEEDED = "quota_exceeded"
    REMOTE_AGENT_LOST = "remote_agent_lost"
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
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    RATE_LIMIT_WAIT = "rate_limit_wait"
    REMOTE_DELIVERED = "remote_delivered"
    REMOTE_CANCEL = "remote_cancel"


class SessionStatus(StrEnum):
    """Whether a session takes new tasks."""

    OPEN = "open"
    CLOSED = "closed"


class ApprovalStatus(StrEnum):
    """Where a tool call that needs a person's approval stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
