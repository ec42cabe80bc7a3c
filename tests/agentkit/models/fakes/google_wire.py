"""Gemini generateContent wire format: JSON responses, ``alt=sse`` streams and error bodies."""

from __future__ import annotations

from typing import Any

from tests.agentkit.models.fakes.server import Scripted, sse_data

FunctionCallSpec = tuple[str | None, str, dict[str, Any]]  # (id or None, name, args)


def _response(parts: list[dict[str, Any]], finish_reason: str | None, usage: dict[str, int] | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    body: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def _usage(prompt: int, candidates: int, thoughts: int = 0) -> dict[str, int]:
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": candidates, "totalTokenCount": prompt + candidates}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def generate(
    text: str | None = None,
    *,
    function_calls: tuple[FunctionCallSpec, ...] = (),
    finish_reason: str = "STOP",
    prompt_tokens: int = 12,
    candidates_tokens: int = 6,
    thoughts_tokens: int = 0,
) -> Scripted:
    parts: list[dict[str, Any]] = []
    if text is not None:
        parts.append({"text": text})
    for call_id, name, args in function_calls:
        call: dict[str, Any] = {"name": name, "args": args}
        if call_id is not None:
            call["id"] = call_id
        parts.append({"functionCall": call})
    return Scripted(body=_response(parts, finish_reason, _usage(prompt_tokens, candidates_tokens, thoughts_tokens)))


def stream(
    deltas: list[str],
    *,
    function_call: FunctionCallSpec | None = None,
    prompt_tokens: int = 9,
    candidates_tokens: int = 14,
) -> Scripted:
    """Text chunks, then optionally a whole functionCall part; usage arrives cumulative on each chunk."""
    events = [
        sse_data(_response([{"text": piece}], None, _usage(prompt_tokens, i + 1))) for i, piece in enumerate(deltas)
    ]
    last_parts: list[dict[str, Any]] = []
    if function_call is not None:
        call_id, name, args = function_call
        call: dict[str, Any] = {"name": name, "args": args}
        if call_id is not None:
            call["id"] = call_id
        last_parts.append({"functionCall": call})
    events.append(sse_data(_response(last_parts, "STOP", _usage(prompt_tokens, candidates_tokens))))
    return Scripted(sse=events)


def error(status: int, message: str, *, status_name: str, headers: dict[str, str] | None = None) -> Scripted:
    body = {"error": {"code": status, "message": message, "status": status_name}}
    return Scripted(status=status, body=body, headers=headers or {})


def empty_stream() -> Scripted:
    """HTTP 200 with an event-stream content type, then the connection closes with no event."""
    return Scripted(sse=[])
