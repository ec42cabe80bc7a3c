from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from agentkit.context import RunContext
from agentkit.errors import ToolDefinitionError, ToolRetry
from agentkit.messages import Usage
from agentkit.tools import Tool, Toolset, parse_docstring, tool


def ctx(deps: Any = None) -> RunContext[Any]:
    return RunContext(deps=deps, run_id="r1", step=1, usage=Usage())


class Point(BaseModel):
    x: int
    y: int


@tool
def forecast(city: str, days: int = 3, point: Point | None = None) -> str:
    """Get the weather forecast.

    Args:
        city: Name of the city,
            as written locally.
        days (int): Number of days.
        point: Optional coordinates.

    Returns:
        The forecast.
    """
    return f"{city}:{days}:{point}"


def test_schema_comes_from_type_hints_and_docstring() -> None:
    schema = forecast.parameters
    assert forecast.description == "Get the weather forecast."
    assert schema["required"] == ["city"]
    assert schema["properties"]["city"]["type"] == "string"
    assert schema["properties"]["city"]["description"] == "Name of the city, as written locally."
    assert schema["properties"]["days"] == {
        "default": 3,
        "description": "Number of days.",
        "title": "Days",
        "type": "integer",
    }
    assert schema["additionalProperties"] is False
    assert "Point" in schema["$defs"]
    definition = forecast.definition()
    assert definition.name == "forecast"
    assert definition.parameters == schema


def test_decorator_with_arguments_overrides_name_description_timeout() -> None:
    @tool(name="lookup", description="Look a thing up.", timeout=2.5)
    async def _f(key: str) -> str:
        return key

    assert isinstance(_f, Tool)
    assert (_f.name, _f.description, _f.timeout, _f.is_async) == ("lookup", "Look a thing up.", 2.5, True)


def test_parse_docstring_without_args_section() -> None:
    assert parse_docstring("Just a summary.") == ("Just a summary.", {})
    assert parse_docstring(None) == ("", {})


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Tool(lambda x: x, name="untyped"),
        lambda: Tool(_varargs),
        lambda: Tool(_ctx_not_first),
        lambda: Tool(_plain, name="has space"),
        lambda: Tool(_plain, timeout=0),
    ],
)
def test_functions_that_cannot_be_tools_are_rejected(bad: Any) -> None:
    with pytest.raises(ToolDefinitionError):
        bad()


def _varargs(*values: int) -> int:
    return sum(values)


def _ctx_not_first(x: int, ctx: RunContext[None]) -> int:
    return x


def _plain(x: int) -> int:
    return x


async def test_valid_call_returns_serialised_result_and_sync_runs_in_a_thread() -> None:
    import threading

    seen: list[str] = []

    @tool
    def where(n: int) -> dict[str, int]:
        seen.append(threading.current_thread().name)
        return {"n": n * 2}

    output = await where.run({"n": "21"}, ctx(), default_timeout=5)
    assert (output.content, output.is_error) == ('{"n":42}', False)
    assert seen and seen[0] != threading.current_thread().name


async def test_invalid_arguments_become_an_error_message_for_the_model() -> None:
    output = await forecast.run({"days": "many", "town": "x"}, ctx(), default_timeout=5)
    assert output.is_error and output.error_kind == "invalid_arguments"
    assert "city: Field required" in output.content
    assert "days:" in output.content and "town: Extra inputs are not permitted" in output.content


async def test_tool_retry_and_exceptions_are_reported_not_raised() -> None:
    @tool
    def picky(x: int) -> int:
        if x < 0:
            raise ToolRetry("x must be positive")
        raise RuntimeError("boom")

    retry = await picky.run({"x": -1}, ctx(), default_timeout=5)
    assert (retry.content, retry.error_kind) == ("x must be positive", "retry")
    crash = await picky.run({"x": 1}, ctx(), default_timeout=5)
    assert crash.error_kind == "exception" and "RuntimeError: boom" in crash.content


async def test_timeout_uses_tool_timeout_then_default() -> None:
    release = asyncio.Event()  # never set: the tool only ends by timing out

    @tool(timeout=0.05)
    async def stuck() -> str:
        await release.wait()
        return "never"

    @tool
    async def stuck_default() -> str:
        await release.wait()
        return "never"

    out = await stuck.run({}, ctx(), default_timeout=60)
    assert out.error_kind == "timeout" and "0.05s" in out.content
    out = await stuck_default.run({}, ctx(), default_timeout=0.05)
    assert out.error_kind == "timeout"


async def test_own_timeout_error_is_not_mistaken_for_the_deadline() -> None:
    @tool
    async def flaky() -> str:
        raise TimeoutError

    out = await flaky.run({}, ctx(), default_timeout=5)
    assert out.error_kind == "exception"


async def test_run_context_is_injected_and_excluded_from_schema() -> None:
    @tool
    async def whoami(ctx: RunContext[dict[str, str]], greeting: str) -> str:
        return f"{greeting} {ctx.deps['user']} at step {ctx.step} of {ctx.run_id}"

    assert whoami.takes_context
    assert list(whoami.parameters["properties"]) == ["greeting"]
    out = await whoami.run({"greeting": "hi"}, ctx({"user": "ada"}), default_timeout=5)
    assert out.content == "hi ada at step 1 of r1"


def test_toolset_composes_and_rejects_duplicates() -> None:
    @tool
    def a() -> int:
        return 1

    def b() -> int:
        return 2

    inner = Toolset(a)
    outer = Toolset(inner, b, [forecast])
    assert outer.names() == ["a", "b", "forecast"]
    assert "b" in outer and len(outer) == 3
    assert outer.get("missing") is None
    assert [d.name for d in outer.definitions()] == ["a", "b", "forecast"]
    with pytest.raises(ToolDefinitionError, match="duplicate tool name 'a'"):
        Toolset(inner, a)
