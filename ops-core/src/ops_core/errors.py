"""Every error ops-core raises on purpose, and the HTTP status each maps to.

::

    OpsCoreError
    ├── ConfigError               a setting is invalid (raised at startup)
    ├── Unauthenticated           401  no key, or one that is malformed, unknown, revoked or expired
    │   └── InvalidSignature      a remote agent's callback: bad, missing or replayed signature
    ├── Forbidden                 403  a valid key without the scope the operation needs
    ├── NotFound                  404
    │   ├── TaskNotFound          also another tenant's task: existence does not leak
    │   ├── KeyNotFound
    │   ├── ApprovalNotFound      no call with that id waits on the task
    │   ├── SessionNotFound       also another tenant's session
    │   ├── ScheduleNotFound      also another tenant's schedule
    │   ├── WorkflowNotFound      also another tenant's workflow
    │   └── AgentNotFound         no remote agent of the tenant by that name
    ├── InvalidRequest            422
    │   ├── UnknownAgent
    │   ├── InvalidModel
    │   │   └── ModelNotAllowed   a valid model string outside OPSCORE_ALLOWED_MODELS
    │   ├── InvalidData           the database refused a value (out of range, unstorable text)
    │   ├── InvalidFields         a request's fields fail its schema (gRPC; REST's handler writes the same)
    │   └── InvalidCallbackUrl    a callback_url that is not http(s) or reaches a private address
    ├── Conflict                  409
    │   ├── TaskFinished          the task is terminal; it cannot be cancelled
    │   ├── NotWaiting            a decision for a task that waits for none, or a call already decided
    │   ├── RetryLimitReached     the task was retried by hand as often as OPSCORE_MAX_MANUAL_RETRIES allows
    │   ├── WorkflowFinished      the workflow ended; it cannot be cancelled
    │   ├── IdempotencyConflict   an idempotency key reused with a different request
    │   ├── SessionClosed         a task for a session that was closed
    │   ├── SessionMoved          a hand retry of a session's turn after a later turn was submitted
    │   ├── AgentExists           a remote agent's name is taken (by a local agent or a registered one)
    │   └── AttemptSuperseded     a remote agent's callback for an attempt that no longer owns the task
    ├── PayloadTooLarge           413
    ├── TooManyRequests           429  with Retry-After
    │   ├── RateLimited           the tenant's submissions per second
    │   └── TokenBudgetSpent      the tenant's daily token budget
    ├── Unavailable               503
    │   ├── DatabaseUnavailable
    │   ├── BrokerUnavailable
    │   └── StreamsFull           this API process already serves OPSCORE_STREAM_MAX_SUBSCRIBERS streams
    └── LeaseLost                 a worker no longer owns the task it runs (fenced by status/attempt)

The API's single exception handler turns each into
``{"error": {"code", "message"}}`` with ``status_code``; the gRPC TaskService
derives each one's status code from ``status_code`` (ops_core/grpc_api/errors.py).
"""

from __future__ import annotations


class OpsCoreError(Exception):
    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(OpsCoreError):
    code = "config_error"


class Unauthenticated(OpsCoreError):
    status_code = 401
    code = "unauthenticated"


class InvalidSignature(Unauthenticated):
    code = "invalid_signature"


class Forbidden(OpsCoreError):
    status_code = 403
    code = "forbidden"


class NotFound(OpsCoreError):
    status_code = 404
    code = "not_found"


class TaskNotFound(NotFound):
    code = "task_not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class ApprovalNotFound(NotFound):
    code = "approval_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class InvalidRequest(OpsCoreError):
    status_code = 422
    code = "invalid_request"


class UnknownAgent(InvalidRequest):
    code = "unknown_agent"


class InvalidModel(InvalidRequest):
    code = "invalid_model"


class ModelNotAllowed(InvalidModel):
    code = "model_not_allowed"


class InvalidData(InvalidRequest):
    code = "invalid_data"


class InvalidFields(InvalidRequest):
    code = "validation_error"


class InvalidCallbackUrl(InvalidRequest):
    code = "invalid_callback_url"


class Conflict(OpsCoreError):
    status_code = 409
    code = "conflict"


class AgentExists(Conflict):
    code = "agent_exists"


class AttemptSuperseded(Conflict):
    code = "attempt_superseded"


class TaskFinished(Conflict):
    code = "task_finished"


class NotWaiting(Conflict):
    code = "not_waiting"


class RetryLimitReached(Conflict):
    code = "retry_limit_reached"


class WorkflowFinished(Conflict):
    code = "workflow_finished"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class SessionClosed(Conflict):
    code = "session_closed"


class SessionMoved(Conflict):
    code = "session_moved_on"


class PayloadTooLarge(OpsCoreError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(OpsCoreError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TooManyRequests):
    code = "rate_limited"


class TokenBudgetSpent(TooManyRequests):
    code = "token_budget_exceeded"


class Unavailable(OpsCoreError):
    status_code = 503
    code = "unavailable"


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"


class BrokerUnavailable(Unavailable):
    code = "broker_unavailable"


class StreamsFull(Unavailable):
    code = "too_many_streams"


class LeaseLost(OpsCoreError):
    code = "lease_lost"
