"""agentkit: a small, typed agent library.

Importing agentkit opens no sockets, reads no environment variables and does
not import any provider SDK; provider clients load when a model string names
them (see :func:`agentkit.models.infer_model`).
"""

from agentkit.agent import Agent, AgentDefinition, Limits
from agentkit.approval import DEFER, Approval, Deferred, PendingApproval
from agentkit.builtin_tools import calculator, current_time
from agentkit.context import RunContext
from agentkit.errors import AgentkitError, ModelError, RunError, ToolRetry
from agentkit.events import RunEvent, RunEventType
from agentkit.hooks import RunHooks
from agentkit.mcp import McpServer, McpSessions
from agentkit.memory import (
    ConversationWindow,
    InMemoryMemory,
    JsonlFileMemoryStore,
    LongTermMemory,
    MemoryRecord,
    MemoryStore,
    StoreBackedMemory,
)
from agentkit.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from agentkit.models.base import Model, ModelRequest, ModelResponse, ModelSettings
from agentkit.outcome import Checkpoint, RunFailure, RunOutcome, RunSuccess, RunSuspended
from agentkit.policy import Policy, PolicyDecision, PolicyVerdict
from agentkit.registry import AgentRegistry, default_registry, load_registry
from agentkit.tools import Tool, Toolset, tool

__all__ = [
    "DEFER",
    "Agent",
    "AgentDefinition",
    "AgentRegistry",
    "AgentkitError",
    "Approval",
    "AssistantMessage",
    "Checkpoint",
    "ConversationWindow",
    "Deferred",
    "InMemoryMemory",
    "JsonlFileMemoryStore",
    "Limits",
    "LongTermMemory",
    "McpServer",
    "McpSessions",
    "MemoryRecord",
    "MemoryStore",
    "Message",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "PendingApproval",
    "Policy",
    "PolicyDecision",
    "PolicyVerdict",
    "RunContext",
    "RunError",
    "RunEvent",
    "RunEventType",
    "RunFailure",
    "RunHooks",
    "RunOutcome",
    "RunSuccess",
    "RunSuspended",
    "StoreBackedMemory",
    "SystemMessage",
    "Tool",
    "ToolCall",
    "ToolResultMessage",
    "ToolRetry",
    "Toolset",
    "Usage",
    "UserMessage",
    "calculator",
    "current_time",
    "default_registry",
    "load_registry",
    "tool",
]
