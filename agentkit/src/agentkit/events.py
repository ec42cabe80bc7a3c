"""What a run reports while it goes: typed events with JSON payloads.

A host persists events as they arrive (ops-core writes each one to
PostgreSQL), so every payload is plain JSON: strings, numbers, lists and
dicts, never pydantic models or exceptions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from agentkit.messages import Usage

__all__ = ["RunEvent", "RunEventType", "usage_payload"]


class RunEventType(StrEnum):
    MODEL_REQUEST = "model_request"
    MODEL_RESPONSE = "model_response"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    POLICY_DECISION = "policy_decision"
    FINAL_ANSWER = "final_answer"
    ERROR = "error"
    RESUMED = "resumed"
    APPROVAL_REQUESTED = "approval_requested"
    RATE_LIMIT_WAIT = "rate_limit_wait"


class RunEvent(BaseModel):
    """One thing that happened in a run. ``step`` is 1-based; 0 means "before the first step"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: RunEventType
    run_id: str
    step: int
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def build(cls, type: RunEventType, run_id: str, step: int, **payload: Any) -> RunEvent:
        # Normalising here means no caller can slip a non-JSON value into a persisted event.
        return cls(type=type, run_id=run_id, step=step, payload=to_jsonable_python(payload))


def usage_payload(usage: Usage) -> dict[str, int | bool]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "requests": usage.requests,
        "estimated": usage.estimated,
    }
