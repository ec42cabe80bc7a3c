"""OpenAI Chat Completions wire format: JSON completions, SSE chunks and error bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from tests.agentkit.models.fakes.server import Recorded, Scripted, sse_data

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


def empty_stream() -> Scripted:
    """HTTP 200 with an event-stream content type, then the connection closes with no event."""
    return Scripted(sse=[])


NO_TOOLS_ANSWER = "I have no tools to answer with."


@dataclass(frozen=True)
class LlamaCppPython:
    """Answers as llama-cpp-python 0.3's server does where it is stricter than OpenAI's API.

    * ``reject_null_content``: an assistant turn with ``"content": null`` fails request
      validation, which this server reports as HTTP 500 with pydantic's message.
    * ``missing_tool_choice_is_none``: without ``tool_choice`` the tools are left out of
      the prompt, so the model answers in text and never calls one.
    * ``ignore_include_usage``: ``stream_options.include_usage`` is ignored; a stream
      carries no usage chunk.
    """

    reject_null_content: bool = True
    missing_tool_choice_is_none: bool = True
    ignore_include_usage: bool = True

    def __call__(self, request: Recorded, scripted: Scripted) -> Scripted:
        body = request.json()
        if self.reject_null_content:
            for index, message in enumerate(body.get("messages", [])):
                if message.get("role") == "assistant" and "content" in message and message["content"] is None:
                    return validation_error(index)
        if self.missing_tool_choice_is_none and body.get("tools") and "tool_choice" not in body:
            scripted = _without_tool_calls(scripted)
        if self.ignore_include_usage and scripted.sse is not None:
            scripted = replace(scripted, sse=[event for event in scripted.sse if '"usage"' not in event])
        return scripted


def validation_error(index: int) -> Scripted:
    """llama-cpp-python's answer to a null assistant content at ``messages[index]``, as 0.3.36 sends it.

    Its route handler turns FastAPI's RequestValidationError into an HTTP 500
    whose message is ``str(error)``: every member of the message union that the
    turn failed, the one that matters third.
    """
    loc = ("body", "messages", index)
    problems: list[dict[str, Any]] = []
    for member, role in (("System", "system"), ("User", "user"), ("Assistant", None), ("Tool", "tool")):
        where = (*loc, f"ChatCompletionRequest{member}Message")
        if role is None:
            problems.append(
                {"type": "string_type", "loc": (*where, "content"), "msg": "Input should be a valid string"}
            )
        else:
            problems.append({"type": "literal_error", "loc": (*where, "role"), "msg": f"Input should be '{role}'"})
    problems.append(
        {"type": "missing", "loc": (*loc, "ChatCompletionRequestToolMessage", "tool_call_id"), "msg": "Field required"}
    )
    message = f"{len(problems)} validation errors:\n" + "".join(f"  {problem}\n" for problem in problems)
    body = {"error": {"message": message, "type": "internal_server_error", "param": None, "code": None}}
    return Scripted(status=500, body=body)


def _without_tool_calls(scripted: Scripted) -> Scripted:
    if scripted.sse is not None:
        events = [sse_data(_chunk({"role": "assistant", "content": NO_TOOLS_ANSWER}))]
        events += [e for e in scripted.sse if '"tool_calls": [' not in e and '"content"' not in e]
        return replace(
            scripted, sse=[e.replace('"finish_reason": "tool_calls"', '"finish_reason": "stop"') for e in events]
        )
    if isinstance(scripted.body, dict) and scripted.body.get("choices"):
        choice = scripted.body["choices"][0]
        message = {"role": "assistant", "content": NO_TOOLS_ANSWER}
        body = {**scripted.body, "choices": [{**choice, "message": message, "finish_reason": "stop"}]}
        return replace(scripted, body=body)
    return scripted
