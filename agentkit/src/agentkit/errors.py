"""Every error agentkit raises or reports.

::

    AgentkitError
    ├── UserError                    misuse: fix the code or the configuration
    │   ├── UnknownProviderError     a model string names no known provider
    │   ├── MissingCredentialsError  a provider's API key is not set
    │   ├── MissingDependencyError   a provider's optional SDK is not installed
    │   ├── ToolDefinitionError      a function cannot be turned into a tool
    │   ├── UnknownAgentError        the registry has no agent by that name
    │   ├── RealRequestBlockedError  a test tried to reach a real provider
    │   └── ScriptExhaustedError     a ScriptedModel was asked more often than scripted
    ├── ModelError                   a model call failed (``retryable`` says if trying again may help)
    │   ├── ModelTimeoutError        retryable
    │   ├── ModelConnectionError     retryable
    │   ├── ModelRateLimitError      retryable, carries ``retry_after``
    │   ├── ModelServerError         retryable (5xx)
    │   ├── ModelAuthError           permanent (401, 403)
    │   └── ModelRequestError        permanent (400, 404, 422: the request itself is wrong)
    ├── ToolRetry                    control flow: a tool asks the model to try again
    │   └── ToolUnavailable          a tool's MCP server crashed or disconnected mid-call (it is restarted)
    └── RunError                     why a run ended without an answer (carried by RunFailure)
        ├── StepLimitExceeded
        ├── UsageLimitExceeded
        ├── ModelFailed              wraps the ModelError that ended the run
        ├── ToolFailed               a tool raised or timed out
        ├── ToolsUnavailable         retryable: an MCP server the agent needs could not be reached
        ├── PolicyDenied             the security policy refused a call the run could not continue without
        ├── OutputValidationFailed   the final answer never matched the result type
        └── RunCancelled             the host's cancellation check said stop
"""

from __future__ import annotations


class AgentkitError(Exception):
    """Base class of every agentkit error."""


class UserError(AgentkitError):
    """The library was used wrongly; retrying will not help."""


class UnknownProviderError(UserError):
    pass


class MissingCredentialsError(UserError):
    pass


class MissingDependencyError(UserError):
    pass


class ToolDefinitionError(UserError):
    pass


class UnknownAgentError(UserError):
    pass


class RealRequestBlockedError(UserError):
    pass


class ScriptExhaustedError(UserError):
    pass


class ModelError(AgentkitError):
    """A model call failed. ``retryable`` tells a host whether another attempt may succeed."""

    retryable: bool = False

    def __init__(self, message: str, *, provider: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code


class ModelTimeoutError(ModelError):
    retryable = True


class ModelConnectionError(ModelError):
    retryable = True


class ModelRateLimitError(ModelError):
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=status_code)
        self.retry_after = retry_after


class ModelServerError(ModelError):
    retryable = True


class ModelAuthError(ModelError):
    pass


class ModelRequestError(ModelError):
    pass


class ToolRetry(AgentkitError):
    """Raised inside a tool to send ``message`` back to the model as a correctable tool error."""


class ToolUnavailable(ToolRetry):
    """A tool's server (an MCP server) is gone: the call in flight failed and may succeed if tried again.

    The connection is dropped and reopened on the next call (a stdio server is
    started again), so the model is told to call the tool again.
    """

    retryable = True


class RunError(AgentkitError):
    """Why a run ended without an answer. ``kind`` is a stable machine-readable name."""

    kind: str = "run_error"
    retryable: bool = False


class StepLimitExceeded(RunError):
    kind = "step_limit"


class UsageLimitExceeded(RunError):
    kind = "usage_limit"


class ModelFailed(RunError):
    kind = "model_error"

    def __init__(self, cause: ModelError) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retryable = cause.retryable


class ToolFailed(RunError):
    kind = "tool_error"


class ToolsUnavailable(RunError):
    """An MCP server the agent names could not be started or reached, so its tools could not be listed."""

    kind = "tools_unavailable"
    retryable = True


class PolicyDenied(RunError):
    kind = "policy_denied"


class OutputValidationFailed(RunError):
    kind = "invalid_output"


class RunCancelled(RunError):
    kind = "cancelled"
