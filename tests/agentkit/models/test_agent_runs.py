"""Full multi-step agent runs (tool call -> real tool -> final answer) against each provider's fake."""

from __future__ import annotations

from agentkit import tools as agentkit_tools
from agentkit.agent import Agent, AgentDefinition
from agentkit.messages import Usage
from agentkit.models._retry import RetryPolicy
from agentkit.models.anthropic import AnthropicModel
from agentkit.models.google import GoogleModel
from agentkit.models.openai import OpenAIModel
from agentkit.outcome import RunSuccess
from tests.agentkit.models.fakes import anthropic_wire, google_wire, openai_wire
from tests.agentkit.models.fakes.server import FakeServer

calls: list[tuple[int, int]] = []


@agentkit_tools.tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    calls.append((a, b))
    return a * b


def _definition() -> AgentDefinition:
    return AgentDefinition(name="calc", instructions="Use the multiply tool.", tools=[multiply])


async def test_openai_agent_run(server: FakeServer, retry: RetryPolicy) -> None:
    calls.clear()
    server.script(
        openai_wire.completion(
            tool_calls=(("call_a", "multiply", {"a": 6, "b": 7}),), prompt_tokens=20, completion_tokens=5
        ),
        openai_wire.completion("6 times 7 is 42.", prompt_tokens=30, completion_tokens=8),
    )
    model = OpenAIModel("gpt-4o-mini", api_key="sk", base_url=f"{server.url}/v1", retry=retry)

    outcome = await Agent(_definition(), model=model).run("What is 6 times 7?")

    assert isinstance(outcome, RunSuccess), outcome
    assert outcome.text == "6 times 7 is 42."
    assert calls == [(6, 7)]
    assert outcome.usage == Usage(input_tokens=50, output_tokens=13, requests=2)
    first, second = (r.json() for r in server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["multiply"]
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_a"
    assert "42" in tool_message["content"]


async def test_anthropic_agent_run(server: FakeServer, retry: RetryPolicy) -> None:
    calls.clear()
    server.script(
        anthropic_wire.message(tool_uses=(("toolu_a", "multiply", {"a": 3, "b": 5}),)),
        anthropic_wire.message("3 times 5 is 15."),
    )
    model = AnthropicModel("claude-sonnet-5", api_key="ant", base_url=server.url, retry=retry)

    outcome = await Agent(_definition(), model=model).run("What is 3 times 5?")

    assert isinstance(outcome, RunSuccess), outcome
    assert outcome.text == "3 times 5 is 15."
    assert calls == [(3, 5)]
    first, second = (r.json() for r in server.requests)
    assert first["system"].startswith("Use the multiply tool.")
    assert [t["name"] for t in first["tools"]] == ["multiply"]
    (result,) = second["messages"][-1]["content"]
    assert result["type"] == "tool_result"
    assert result["tool_use_id"] == "toolu_a"
    assert "15" in str(result["content"])
    assert result["is_error"] is False


async def test_google_agent_run(server: FakeServer, retry: RetryPolicy) -> None:
    calls.clear()
    server.script(
        google_wire.generate(function_calls=(("fc-a", "multiply", {"a": 4, "b": 9}),)),
        google_wire.generate("4 times 9 is 36."),
    )
    model = GoogleModel("gemini-2.5-flash", api_key="g", base_url=server.url, retry=retry)

    outcome = await Agent(_definition(), model=model).run("What is 4 times 9?")

    assert isinstance(outcome, RunSuccess), outcome
    assert outcome.text == "4 times 9 is 36."
    assert calls == [(4, 9)]
    second = server.requests[1].json()
    response_part = second["contents"][-1]["parts"][0]["functionResponse"]
    assert response_part["name"] == "multiply"
    assert response_part["id"] == "fc-a"
    assert "36" in str(response_part["response"])
