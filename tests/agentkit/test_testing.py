from __future__ import annotations

import itertools
import random
import re
import time
from typing import Literal

import pytest

from agentkit.agent import Agent, AgentDefinition
from agentkit.builtin_tools import builtin_toolset
from agentkit.errors import ModelRateLimitError, RealRequestBlockedError, ScriptExhaustedError
from agentkit.events import RunEventType
from agentkit.hooks import RunHooks
from agentkit.messages import ToolResultMessage, UserMessage
from agentkit.models import _guard
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.outcome import RunSuccess
from agentkit.testing import (
    FunctionModel,
    OfflineModel,
    ScriptedModel,
    _find_expression,
    allow_model_requests,
    block_real_requests,
    example_arguments,
    real_requests_allowed,
)
from agentkit.tools import tool

from .helpers import EventLog

REQUEST = ModelRequest(messages=[UserMessage(content="hi")])


async def test_function_model_accepts_sync_and_async_functions() -> None:
    def sync(request: ModelRequest) -> ModelResponse:
        return ModelResponse(text=f"sync {len(request.messages)}")

    async def asynchronous(request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="async")

    sync_model = FunctionModel(sync)
    assert (await sync_model.request(REQUEST)).text == "sync 1"
    assert sync_model.requests == [REQUEST]
    assert (await FunctionModel(asynchronous, name="fn:x").request(REQUEST)).text == "async"


async def test_scripted_model_replays_raises_and_fails_when_exhausted() -> None:
    error = ModelRateLimitError("slow down", retry_after=2)
    model = ScriptedModel(["one", error])
    assert (await model.request(REQUEST)).text == "one"
    with pytest.raises(ModelRateLimitError):
        await model.request(REQUEST)
    assert model.remaining == 0
    with pytest.raises(ScriptExhaustedError, match="request 3"):
        await model.request(REQUEST)


async def test_offline_model_answers_in_one_call_when_there_is_nothing_to_do() -> None:
    model = OfflineModel()
    assert model.name == "offline:default" and OfflineModel("offline:x").name == "offline:x"
    outcome = await Agent(AgentDefinition(name="o", tools=builtin_toolset()), model).run("Write a haiku")
    assert isinstance(outcome, RunSuccess) and outcome.steps == 1
    assert outcome.text.startswith("[offline model]") and "not a real LLM" in outcome.text


async def test_offline_model_uses_calculator_and_current_time() -> None:
    log = EventLog()
    agent = Agent(AgentDefinition(name="o", tools=builtin_toolset()), OfflineModel())
    outcome = await agent.run("What is 17 * (3 + 4), and what time is it?", hooks=RunHooks(on_event=log))
    assert isinstance(outcome, RunSuccess) and outcome.steps == 2
    called = [(e.payload["name"], e.payload["arguments"]) for e in log.of(RunEventType.TOOL_CALL)]
    assert called == [("calculator", {"expression": "17 * (3 + 4)"}), ("current_time", {})]
    results = [m for m in outcome.messages if isinstance(m, ToolResultMessage)]
    assert results[0].content == "119"
    assert "calculator result: 119" in outcome.text and "current_time result: 20" in outcome.text


async def test_offline_model_usage_is_deterministic() -> None:
    first = await OfflineModel().request(REQUEST)
    second = await OfflineModel().request(REQUEST)
    assert first.usage == second.usage and first.usage.input_tokens > 0 and first.usage.requests == 1
    assert first.text == second.text


async def test_offline_model_without_tools_ignores_arithmetic() -> None:
    response = await OfflineModel().request(ModelRequest(messages=[UserMessage(content="2 + 2")]))
    assert response.tool_calls == () and response.text is not None


@pytest.mark.parametrize(
    ("goal", "expression"),
    [
        ("What is 6 * 7?", "6 * 7"),
        ("What is 17 * (3 + 4), and what time is it?", "17 * (3 + 4)"),
        ("Compute 2**10 please", "2**10"),
        ("-5 + 3 =", "-5 + 3"),
        ("((1 + 2) * 3) / 4.5", "((1 + 2) * 3) / 4.5"),
        ("Step 1: add 10 % 3 and 7 // 2", "10 % 3"),
        ("Run 2 agents at 3 pm", None),
        ("no numbers here - just words + signs", None),
    ],
)
def test_find_expression_in_realistic_goals(goal: str, expression: str | None) -> None:
    assert _find_expression(goal) == expression


# The single regex the offline model used to search with: the reference for what counts as an
# expression. Fine on short text, quadratic on long text, hence _find_expression.
_REFERENCE_RE = re.compile(r"[-+(]*\s*\d[\d.\s]*(?:(?:\*\*|//|[-+*/%])[\s(]*\d[\d.\s)]*)+")


def _reference(text: str) -> str | None:
    match = _REFERENCE_RE.search(text)
    return match.group(0).strip() if match else None


def test_find_expression_agrees_with_the_reference_regex() -> None:
    alphabet = "1 .+-*/(%)x"
    short = ("".join(chars) for size in range(6) for chars in itertools.product(alphabet, repeat=size))
    rng = random.Random(20261126)
    wide = "12 .+-*/(%)x=\t\n\u0663\u00a0"  # and a non-ASCII digit and space: \d and \s are Unicode
    longer = ("".join(rng.choice(wide) for _ in range(rng.randint(6, 40))) for _ in range(20_000))
    for text in itertools.chain(short, longer):
        assert _find_expression(text) == _reference(text), text


# Each shape made the reference regex retry from every start position (minutes for 1 MB), or
# once made a match as long as the text; 2 s is about a hundred times what _find_expression needs.
@pytest.mark.parametrize("unit", ["1 ", "1", "(", "-", "( 1 ", "1 - -", "1 )", "1 * x ", "1+", "1*("])
async def test_offline_model_plans_in_linear_time_on_a_megabyte_goal(unit: str) -> None:
    goal = unit * (1_000_000 // len(unit))
    request = ModelRequest(messages=[UserMessage(content=goal)], tools=builtin_toolset().definitions())
    started = time.perf_counter()
    response = await OfflineModel().request(request)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{unit!r} * 1 MB took {elapsed:.1f}s"
    expected = _reference(unit * 3)  # the same shape, short enough for the reference regex
    assert bool(response.tool_calls) == (expected is not None)


def test_block_real_requests_allows_only_loopback() -> None:
    previous = real_requests_allowed()  # the root conftest blocks for the whole session
    with block_real_requests():
        assert not real_requests_allowed()
        for url in ("http://127.0.0.1:8080/v1", "http://localhost:11434", "http://[::1]:9000", "127.0.0.2:80"):
            _guard.check_real_request("openai", url)
        for url in (None, "https://api.openai.com/v1", "http://10.0.0.1", "http://localhost.evil.com"):
            with pytest.raises(RealRequestBlockedError, match="openai"):
                _guard.check_real_request("openai", url)
    assert real_requests_allowed() is previous


def test_allow_model_requests_switches_the_flag_both_ways() -> None:
    previous = real_requests_allowed()
    try:
        allow_model_requests(True)
        _guard.check_real_request("anthropic", "https://api.anthropic.com")
        allow_model_requests(False)
        with pytest.raises(RealRequestBlockedError, match="anthropic"):
            _guard.check_real_request("anthropic", "https://api.anthropic.com")
    finally:
        allow_model_requests(previous)


@tool
def lookup_order(order_id: int, region: str = "eu", express: bool | None = None) -> str:
    """Look up an order."""
    return f"order {order_id} in {region}"


@tool
def send_email(to: str, subject: str, priority: Literal["low", "high"]) -> str:
    """Send an email."""
    return f"sent to {to}: {subject} ({priority})"


async def test_offline_model_calls_the_tools_the_goal_names_with_arguments_from_their_schema() -> None:
    agent = Agent(AgentDefinition(name="ops", tools=[lookup_order, send_email]), model=OfflineModel())

    outcome = await agent.run("Check lookup_order for order 42, then send_email to 'a@b.c' saying 'shipped'")

    assert isinstance(outcome, RunSuccess)
    assert "lookup_order result: order 42 in eu" in outcome.text
    assert "send_email result: sent to a@b.c: shipped (low)" in outcome.text


async def test_offline_model_leaves_tools_the_goal_does_not_name() -> None:
    agent = Agent(AgentDefinition(name="ops", tools=[lookup_order]), model=OfflineModel())

    outcome = await agent.run("How are orders looked up? (lookup_orders is not a tool)")

    assert isinstance(outcome, RunSuccess) and "No tool was needed." in outcome.text


def test_example_arguments_fit_their_schema() -> None:
    schema = send_email.definition().parameters
    arguments = example_arguments(schema, goal='mail "x@y.z" about "hello" and 7 more')
    assert arguments == {"to": "x@y.z", "subject": "hello", "priority": "low"}
    assert send_email.validate(arguments) is not None
    assert example_arguments(lookup_order.definition().parameters) == {"order_id": 1}
