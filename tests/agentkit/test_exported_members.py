"""Pin agentkit's public API: adding, removing or renaming a top-level name must be deliberate.

Like httpx's tests/test_exported_members.py: a change here changes what users may import from
``agentkit`` directly. Everything else lives in its submodule (``agentkit.testing``, ...).
"""

from __future__ import annotations

import types

import pytest

import agentkit

EXPORTED = [
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


def test_all_is_exactly_the_pinned_list() -> None:
    assert agentkit.__all__ == EXPORTED


def test_all_is_sorted_without_duplicates() -> None:
    # Constants first, then the rest by code point: the order ruff's RUF022 (isort-style) keeps.
    assert agentkit.__all__ == sorted(set(agentkit.__all__), key=lambda name: (not name.isupper(), name))


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from agentkit import {name}", namespace)  # the statement users write
    assert namespace[name] is getattr(agentkit, name)


def test_nothing_public_is_exported_by_accident() -> None:
    # Submodules appear as attributes once imported; everything else public must be in __all__.
    public = {name for name, value in vars(agentkit).items() if not name.startswith("_")}
    modules = {name for name in public if isinstance(getattr(agentkit, name), types.ModuleType)}
    assert public - modules == set(agentkit.__all__)
