"""Token usage when the provider reports none.

Some OpenAI-compatible servers ignore ``stream_options.include_usage`` (or
send no ``usage`` at all), which would record a request as free and let it
slip past ``Limits.max_total_tokens``. agentkit then estimates: one token per
:data:`CHARS_PER_TOKEN` characters, rounded up, of the JSON of the messages
and tool schemas sent (input) and of the text and tool calls received
(output). That is the usual rule of thumb for English with BPE tokenizers; it
is a bound to enforce limits with, not a bill. The usage says it is an
estimate (``Usage.estimated_requests``) and so do the run's events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from agentkit.messages import ToolCall, Usage
from agentkit.models.base import ModelRequest

__all__ = ["CHARS_PER_TOKEN", "estimate_usage"]

CHARS_PER_TOKEN = 4


def _tokens(characters: int) -> int:
    return math.ceil(characters / CHARS_PER_TOKEN)


def estimate_usage(request: ModelRequest, text: str | None, tool_calls: Sequence[ToolCall]) -> Usage:
    """One request's usage, estimated from what was sent and received."""
    sent = [message.model_dump(mode="json") for message in request.messages]
    sent += [tool.model_dump(mode="json") for tool in request.tools]
    received = len(text or "") + sum(len(call.name) + len(json.dumps(call.arguments)) for call in tool_calls)
    return Usage(
        input_tokens=_tokens(len(json.dumps(sent, ensure_ascii=False))),
        output_tokens=_tokens(received),
        requests=1,
        estimated_requests=1,
    )
