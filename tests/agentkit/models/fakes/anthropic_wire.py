"""Anthropic Messages wire format: JSON messages, the event stream and error bodies."""

from __future__ import annotations

from typing import Any

from tests.agentkit.models.fakes.server import Scripted, sse_event

ToolUseSpec = tuple[str, str, dict[str, Any]]  # (id, name, input)


def _usage(input_tokens: int, output_tokens: int, cache_read: int, cache_creation: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
    }


def message(
    text: str | None = None,
    *,
    tool_uses: tuple[ToolUseSpec, ...] = (),
    stop_reason: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 4,
    cache_read: int = 0,
    cache_creation: int = 0,
) -> Scripted:
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    content += [{"type": "tool_use", "id": id_, "name": name, "input": args} for id_, name, args in tool_uses]
    body = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "stop_sequence": None,
        "usage": _usage(input_tokens, output_tokens, cache_read, cache_creation),
    }
    return Scripted(body=body)


def stream(
    deltas: list[str],
    *,
    tool_use: tuple[str, str, list[str]] | None = None,
    input_tokens: int = 8,
    output_tokens: int = 15,
    cache_read: int = 0,
) -> Scripted:
    """A text block streamed as text_delta, then optionally a tool_use block as input_json_delta."""
    start = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(input_tokens, 1, cache_read, 0),
    }
    events = [sse_event("message_start", {"type": "message_start", "message": start})]
    events.append(
        sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
    )
    events.append(sse_event("ping", {"type": "ping"}))
    for piece in deltas:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        events.append(sse_event("content_block_delta", delta))
    events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if tool_use is not None:
        id_, name, fragments = tool_use
        block = {"type": "tool_use", "id": id_, "name": name, "input": {}}
        events.append(
            sse_event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": block})
        )
        for piece in fragments:
            delta = {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            events.append(sse_event("content_block_delta", delta))
        events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 1}))
    final = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if tool_use else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }
    events.append(sse_event("message_delta", final))
    events.append(sse_event("message_stop", {"type": "message_stop"}))
    return Scripted(sse=events)


def error(
    status: int, message: str, *, type_: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> Scripted:
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return Scripted(status=status, body=body, headers=headers or {})


def empty_stream() -> Scripted:
    """HTTP 200 with an event-stream content type, then the connection closes with no event."""
    return Scripted(sse=[])
