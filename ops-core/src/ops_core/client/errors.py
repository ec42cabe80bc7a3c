"""Every error the Python SDK raises: one class per error code the API answers with.

::

    ApiError                      base: ``code``, ``status_code``, ``message``, ``retry_after``
    ├── TransportError            no answer: connection refused or reset, timeout
    │   └── StreamLost            a task's stream could not be reopened in time
    ├── UnexpectedResponse        an answer that is not the API's shape (a proxy, another service)
    ├── WaitTimeout               ``wait`` ran out before the task ended (also a ``TimeoutError``)
    ├── BadRequest                400 bad_request
    ├── Unauthenticated           401 unauthenticated
    │   └── InvalidSignature      401 invalid_signature (a remote agent's callback)
    ├── Forbidden                 403 forbidden
    ├── NotFound                  404 not_found (no such route)
    │   ├── TaskNotFound          404 task_not_found
    │   ├── KeyNotFound           404 key_not_found
    │   ├── ApprovalNotFound      404 approval_not_found
    │   ├── AgentNotFound         404 agent_not_found
    │   ├── ScheduleNotFound      404 schedule_not_found
    │   ├── SessionNotFound       404 session_not_found
    │   └── WorkflowNotFound      404 workflow_not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── Conflict                  409 conflict
    │   ├── TaskFinished          409 task_finished
    │   ├── NotWaiting            409 not_waiting
    │   ├── RetryLimitReached     409 retry_limit_reached
    │   ├── IdempotencyConflict   409 idempotency_conflict
    │   ├── AgentExists           409 agent_exists
    │   ├── AttemptSuperseded     409 attempt_superseded
    │   ├── SessionClosed         409 session_closed
    │   ├── SessionMovedOn        409 session_moved_on
    │   └── WorkflowFinished      409 workflow_finished
    ├── PayloadTooLarge           413 payload_too_large
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── InvalidRequest            422 invalid_request
    │   ├── ValidationError       422 validation_error (a field of the body or query)
    │   ├── UnknownAgent          422 unknown_agent
    │   ├── InvalidModel          422 invalid_model
    │   │   └── ModelNotAllowed   422 model_not_allowed
    │   ├── InvalidData           422 invalid_data
    │   └── InvalidCallbackUrl    422 invalid_callback_url
    ├── TooManyRequests           429 too_many_requests
    │   ├── RateLimited           429 rate_limited
    │   └── TokenBudgetExceeded   429 token_budget_exceeded
    ├── InternalError             500 internal_error (and lease_lost, config_error, which clients never see)
    └── Unavailable               503 unavailable
        ├── DatabaseUnavailable   503 database_unavailable
        ├── BrokerUnavailable     503 broker_unavailable
        └── TooManyStreams        503 too_many_streams

The codes are the server's (``ops_core.errors`` and ``ops_core.api.errors``); this
module imports neither, so the SDK stays free of the server's dependencies. A code
this SDK does not know yet becomes the class of its HTTP status, or ``ApiError``.
"""

from __future__ import annotations


class ApiError(Exception):
    code: str = "error"
    status_code: int | None = None

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        #: Seconds the server asked to wait before trying again (429 and 503), if it said.
        self.retry_after = retry_after


class TransportError(ApiError):
    code = "transport_error"


class StreamLost(TransportError):
    code = "stream_lost"


class UnexpectedResponse(ApiError):
    code = "unexpected_response"


class WaitTimeout(ApiError, TimeoutError):
    code = "wait_timeout"


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


class Unauthenticated(ApiError):
    status_code = 401
    code = "unauthenticated"


class InvalidSignature(Unauthenticated):
    code = "invalid_signature"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class TaskNotFound(NotFound):
    code = "task_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class ApprovalNotFound(NotFound):
    code = "approval_not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class MethodNotAllowed(ApiError):
    status_code = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class TaskFinished(Conflict):
    code = "task_finished"


class NotWaiting(Conflict):
    code = "not_waiting"


class RetryLimitReached(Conflict):
    code = "retry_limit_reached"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class AgentExists(Conflict):
    code = "agent_exists"


class AttemptSuperseded(Conflict):
    code = "attempt_superseded"


class SessionClosed(Conflict):
    code = "session_closed"


class SessionMovedOn(Conflict):
    code = "session_moved_on"


class WorkflowFinished(Conflict):
    code = "workflow_finished"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidRequest(ApiError):
    status_code = 422
    code = "invalid_request"


class ValidationError(InvalidRequest):
    code = "validation_error"


class UnknownAgent(InvalidRequest):
    code = "unknown_agent"


class InvalidModel(InvalidRequest):
    code = "invalid_model"


class ModelNotAllowed(InvalidModel):
    code = "model_not_allowed"


class InvalidData(InvalidRequest):
    code = "invalid_data"


class InvalidCallbackUrl(InvalidRequest):
    code = "invalid_callback_url"


class TooManyRequests(ApiError):
    status_code = 429
    code = "too_many_requests"


class RateLimited(TooManyRequests):
    code = "rate_limited"


class TokenBudgetExceeded(TooManyRequests):
    code = "token_budget_exceeded"


class InternalError(ApiError):
    status_code = 500
    code = "internal_error"


class Unavailable(ApiError):
    status_code = 503
    code = "unavailable"


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"


class BrokerUnavailable(Unavailable):
    code = "broker_unavailable"


class TooManyStreams(Unavailable):
    code = "too_many_streams"


def _subclasses(cls: type[ApiError]) -> list[type[ApiError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


_CLIENT_SIDE = {"error", "transport_error", "stream_lost", "unexpected_response", "wait_timeout"}
#: The class for each code the API sends.
BY_CODE: dict[str, type[ApiError]] = {cls.code: cls for cls in _subclasses(ApiError) if cls.code not in _CLIENT_SIDE}
# Codes of failures inside the server that reach a client only as an internal error.
BY_CODE.update({"lease_lost": InternalError, "config_error": InternalError, "http_error": ApiError})
#: The most general class for each status, for a code this SDK does not know.
BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls for cls in reversed(_subclasses(ApiError)) if cls.status_code is not None
}


def error_for(status_code: int, code: str | None, message: str, retry_after: float | None = None) -> ApiError:
    """The typed error for an answer of the API."""
    cls = BY_CODE.get(code or "") or BY_STATUS.get(status_code, ApiError)
    return cls(message, status_code=status_code, code=code, retry_after=retry_after)
