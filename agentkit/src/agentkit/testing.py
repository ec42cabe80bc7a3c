"""Models for tests and offline use, and the switch that blocks real requests.

* :class:`FunctionModel`: a function (sync or async) answers each request.
* :class:`ScriptedModel`: replays a list of responses, then fails loudly.
* :class:`OfflineModel`: a deterministic stand-in that really uses the
  built-in tools, so a whole agent can be exercised without a network. Its
  answers start with ``[offline model]`` so nobody mistakes them for an LLM's.
* :func:`block_real_requests` / :func:`allow_model_requests`: make every
  provider client refuse non-loopback requests (see :mod:`agentkit.models._guard`).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentkit.errors import ModelError, ScriptExhaustedError
from agentkit.memory import estimate_tokens, message_tokens
from agentkit.messages import AssistantMessage, ToolCall, ToolResultMessage, Usage, UserMessage
from agentkit.models._gate import gate_for
from agentkit.models._guard import allow_model_requests, block_real_requests, real_requests_allowed
from agentkit.models.base import DeltaCallback, Model, ModelRequest, ModelResponse, ToolDefinition
from agentkit.models.ratelimit import RateLimiter

__all__ = [
    "OFFLINE_PREFIX",
    "FunctionModel",
    "OfflineModel",
    "ScriptedModel",
    "allow_model_requests",
    "block_real_requests",
    "real_requests_allowed",
]

OFFLINE_PREFIX = "[offline model]"

ModelFunction = Callable[[ModelRequest], ModelResponse | Awaitable[ModelResponse]]


class FunctionModel(Model):
    """Answers with ``function(request)``; every request is kept in ``requests`` for assertions."""

    def __init__(self, function: ModelFunction, *, name: str = "function:test") -> None:
        self.function = function
        self._name = name
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest, *, on_delta: DeltaCallback | None = None) -> ModelResponse:
        self.requests.append(request)
        response = self.function(request)
        if inspect.isawaitable(response):
            response = await response
        if on_delta is not None and response.text:
            await on_delta(response.text)
        return response


ScriptItem = ModelResponse | ModelError | str


class ScriptedModel(Model):
    """Returns the scripted items in order: a response, a string (a plain text answer) or a
    :class:`ModelError` to raise. Asking for more than the script raises
    :class:`ScriptExhaustedError`, so a test never silently gets a default answer.
    """

    def __init__(self, script: Sequence[ScriptItem], *, name: str = "scripted:test") -> None:
        self.script = list(script)
        self._name = name
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        return len(self.script) - len(self.requests)

    async def request(self, request: ModelRequest, *, on_delta: DeltaCallback | None = None) -> ModelResponse:
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self.script):
            raise ScriptExhaustedError(f"{self._name}: request {index + 1} but the script has {len(self.script)}")
        item = self.script[index]
        if isinstance(item, ModelError):
            raise item
        response = ModelResponse(text=item, model_name=self._name) if isinstance(item, str) else item
        if on_delta is not None and response.text:
            await on_delta(response.text)
        return response


# An arithmetic expression in a goal ("17 * (3 + 4)", "2**10") is a sign/paren prefix, a first
# operand, then one or more "operator, operand" pairs. One regex for the whole shape, searched,
# retries from every start position and is quadratic on text such as "1 1 1 ..."; so
# _find_expression walks the goal once, matching these pieces at fixed positions. Quantifiers
# are possessive: no char class overlaps what follows it, so backtracking could never find
# another match, only burn time.
_FIRST_OPERAND_RE = re.compile(r"\d[\d.\s]*+")
_OPERATIONS_RE = re.compile(r"(?:(?:\*\*|//|[-+*/%])[\s(]*+\d[\d.\s)]*+)++")
_PREFIX_CHARS = "-+("
_PLANNED = frozenset({"calculator", "current_time"})  # called by their own rules above, not by name
_QUOTED_RE = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_TIME_RE = re.compile(r"\b(time|date|today|now|clock|day)\b", re.IGNORECASE)


def _find_expression(text: str) -> str | None:
    """The first arithmetic expression in ``text``, stripped, or None; time linear in ``len(text)``."""
    pos = 0
    while (operand := _FIRST_OPERAND_RE.search(text, pos)) is not None:
        first, end = operand.span()
        operations = _OPERATIONS_RE.match(text, end)
        if operations is not None:
            # The prefix is whitespace after signs and parentheses; it cannot reach back past
            # ``pos``, where the previous attempt ended on a character that is no whitespace.
            start = pos + len(text[pos:first].rstrip().rstrip(_PREFIX_CHARS))
            return text[start : operations.end()].strip()
        # Every later digit before ``end`` reaches the same ``end`` and fails the same way;
        # a sign at ``end`` may still start the next expression.
        pos = end
    return None


class OfflineModel(Model):
    """A deterministic, network-free model that uses ``calculator`` and ``current_time`` when offered.

    First turn: if the goal contains an arithmetic expression and a
    ``calculator`` tool exists, it calls it; if the goal asks for the time or
    date and ``current_time`` exists, it calls that too. Any other tool the
    goal names (``lookup_order``, as a word) is called with arguments built
    from its JSON schema (:func:`example_arguments`), so an agent's own tools
    can be tried without an LLM. All in one turn. With nothing to do it
    answers at once. After tool results it answers, quoting them. Usage is
    the same token estimate agentkit uses elsewhere.
    """

    def __init__(self, name: str = "default", *, rate_limiter: RateLimiter | None = None) -> None:
        self._name = name if name.startswith("offline:") else f"offline:{name}"
        # Limits apply to it as to a real provider: a host can try them, and measure their cost, offline.
        self._rate_limiter = rate_limiter

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest, *, on_delta: DeltaCallback | None = None) -> ModelResponse:
        gate = gate_for(self._rate_limiter, self._name, request)
        if gate is None:
            return await self._respond(request, on_delta)
        await gate.enter()
        response = await self._respond(request, on_delta)
        await gate.succeeded(response.usage)
        return response

    async def _respond(self, request: ModelRequest, on_delta: DeltaCallback | None) -> ModelResponse:
        messages = list(request.messages)
        goal = next((m.content for m in messages if isinstance(m, UserMessage)), "")
        tool_names = {t.name for t in request.tools}
        has_acted = any(isinstance(m, AssistantMessage) for m in messages)
        text: str | None = None
        calls: tuple[ToolCall, ...] = ()
        if not has_acted:
            calls = self._plan(goal, tool_names)
            calls += self._named(goal, request.tools, start=len(calls) + 1)
        if not calls:
            text = self._answer(goal, messages)
        input_tokens = sum(message_tokens(m) for m in messages)
        input_tokens += sum(estimate_tokens(json.dumps(t.parameters)) for t in request.tools)
        output_tokens = estimate_tokens(text or "") + sum(
            estimate_tokens(json.dumps(c.arguments)) + estimate_tokens(c.name) for c in calls
        )
        if on_delta is not None and text:
            await on_delta(text)
        return ModelResponse(
            text=text,
            tool_calls=calls,
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens, requests=1),
            finish_reason="tool_calls" if calls else "stop",
            model_name=self._name,
        )

    @staticmethod
    def _plan(goal: str, tool_names: set[str]) -> tuple[ToolCall, ...]:
        calls: list[ToolCall] = []
        if "calculator" in tool_names:
            expression = _find_expression(goal)
            if expression:
                calls.append(ToolCall(id="offline-1", name="calculator", arguments={"expression": expression}))
        if "current_time" in tool_names and _TIME_RE.search(goal):
            calls.append(ToolCall(id=f"offline-{len(calls) + 1}", name="current_time", arguments={}))
        return tuple(calls)

    @staticmethod
    def _named(goal: str, tools: Sequence[ToolDefinition], *, start: int) -> tuple[ToolCall, ...]:
        calls: list[ToolCall] = []
        for tool in tools:
            if tool.name in _PLANNED or not re.search(rf"(?<![\w-]){re.escape(tool.name)}(?![\w-])", goal, re.I):
                continue
            arguments = example_arguments(tool.parameters, goal)
            calls.append(ToolCall(id=f"offline-{start + len(calls)}", name=tool.name, arguments=arguments))
        return tuple(calls)

    @staticmethod
    def _answer(goal: str, messages: Sequence[object]) -> str:
        results = [m for m in messages if isinstance(m, ToolResultMessage)]
        first_line = goal.strip().splitlines()[0] if goal.strip() else ""
        lines = [f"{OFFLINE_PREFIX} This is a deterministic offline stand-in, not a real LLM."]
        lines.append(f"Goal: {first_line}")
        for result in results:
            label = "error" if result.is_error else "result"
            lines.append(f"{result.name} {label}: {result.content}")
        if not results:
            lines.append("No tool was needed.")
        return "\n".join(lines)


def example_arguments(schema: dict[str, Any], goal: str = "") -> dict[str, Any]:
    """Arguments that fit ``schema`` (a tool's JSON schema), taken from ``goal`` where it can.

    Every required property gets a value: its default, const or first enum
    value if the schema gives one; else the goal's quoted strings and numbers,
    in order, for string and number properties; else a plain value of its type.
    """
    quoted = [a or b for a, b in _QUOTED_RE.findall(goal)]
    unquoted = _QUOTED_RE.sub(" ", goal)
    numbers = [float(n) for n in _NUMBER_RE.findall(unquoted)]
    defs = schema.get("$defs", {})
    properties = schema.get("properties", {})
    return {
        name: _example(_resolved(properties[name], defs), quoted, numbers, defs)
        for name in schema.get("required", [])
        if name in properties
    }


def _resolved(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return dict(defs.get(ref.removeprefix("#/$defs/"), {}))
    for key in ("anyOf", "oneOf"):
        options = [o for o in prop.get(key, []) if o.get("type") != "null"]
        if options:
            return _resolved(options[0], defs)
    return prop


def _example(prop: dict[str, Any], quoted: list[str], numbers: list[float], defs: dict[str, Any]) -> Any:
    for key in ("default", "const"):
        if key in prop:
            return prop[key]
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type", "string")
    if kind == "string":
        return quoted.pop(0) if quoted else "example"
    if kind in ("integer", "number"):
        value = numbers.pop(0) if numbers else 1
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return example_arguments(prop | {"$defs": defs}) if prop.get("properties") else {}
    return None
