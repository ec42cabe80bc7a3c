"""OpenAI Chat Completions wire format: JSON completions, SSE chunks and error bodies."""

from __future__ import annotations

import json
from typing import Any

from tests.agentkit.models.fakes.server import Scripted, sse_data

ToolCallSpec = tuple[str, str, dict[str, Any]]  # (id, name, arguments)


def completion(
    text: str | None = None,
    *,
    tool_calls: tuple[ToolCallSpec, ...] = (),
    finish_reason: str | None = None,
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    model: str = "gpt-4o-mini",
) -> Scripted:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for id_, name, args in tool_calls
        ]
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Scripted(body=body)


def _chunk(delta: dict[str, Any], finish_reason: str | None = None, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def stream(
    deltas: list[str],
    *,
    tool_call: tuple[str, str, list[str]] | None = None,
    prompt_tokens: int = 5,
    completion_tokens: int = 9,
) -> Scripted:
    """Text deltas, then optionally one tool call whose JSON arguments arrive in fragments."""
    events = [sse_data(_chunk({"role": "assistant", "content": ""}))]
    events += [sse_data(_chunk({"content": piece})) for piece in deltas]
    if tool_call is not None:
        call_id, name, fragments = tool_call
        first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(sse_data(_chunk({"tool_calls": [first]})))
        events += [
            sse_data(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})) for piece in fragments
        ]
    events.append(sse_data(_chunk({}, finish_reason="tool_calls" if tool_call else "stop")))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    events.append(sse_data({**_chunk({}), "choices": [], "usage": usage}))
    events.append("data: [DONE]\n\n")
    return Scripted(sse=events)


def error(
    status: int, message: str, *, type_: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> Scripted:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return Scripted(status=status, body=body, headers=headers or {})
