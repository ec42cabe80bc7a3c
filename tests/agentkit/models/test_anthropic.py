"""AnthropicModel against a local fake speaking the Messages API wire format."""

from __future__ import annotations

import pytest

from agentkit.errors import ModelAuthError, ModelTimeoutError
from agentkit.messages import SystemMessage, ToolCall, ToolResultMessage, Usage, UserMessage
from agentkit.models._retry import RetryPolicy
from agentkit.models.anthropic import AnthropicModel
from agentkit.models.base import ModelRequest, ModelSettings, ToolDefinition
from tests.agentkit.models.fakes import anthropic_wire as wire
from tests.agentkit.models.fakes.server import FakeServer, SleepRecorder

LOOKUP = ToolDefinition(
    name="lookup",
    description="Look a word up.",
    parameters={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
)


def _model(server: FakeServer, retry: RetryPolicy) -> AnthropicModel:
    return AnthropicModel("claude-sonnet-5", api_key="ant-test", base_url=server.url, retry=retry)


def _hi() -> ModelRequest:
    return ModelRequest(messages=[UserMessage(content="hi")])


async def test_tool_use_round_trip(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        wire.message("Looking it up.", tool_uses=(("toolu_1", "lookup", {"word": "kayak"}),)),
        wire.message("A kayak is a small boat."),
    )
    model = _model(server, retry)
    first = ModelRequest(
        messages=[SystemMessage(content="You define words."), UserMessage(content="define kayak")], tools=[LOOKUP]
    )

    response = await model.request(first)

    assert response.text == "Looking it up."
    assert response.tool_calls == (ToolCall(id="toolu_1", name="lookup", arguments={"word": "kayak"}),)
    assert response.finish_reason == "tool_calls"
    sent = server.requests[0]
    assert sent.path == "/v1/messages"
    # This SDK generation sends the key as a bearer token; older ones used x-api-key.
    assert "ant-test" in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "").removeprefix("Bearer "))
    assert "anthropic-version" in sent.headers
    body = sent.json()
    assert body["system"] == "You define words."
    assert body["max_tokens"] == 4096
    assert body["tools"] == [{"name": "lookup", "description": "Look a word up.", "input_schema": LOOKUP.parameters}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "define kayak"}]}]

    second = ModelRequest(
        messages=[
            *first.messages,
            response.to_message(),
            ToolResultMessage(tool_call_id="toolu_1", name="lookup", content="a small boat"),
        ],
        tools=[LOOKUP],
    )
    final = await model.request(second)

    assert final.text == "A kayak is a small boat."
    assert final.finish_reason == "stop"
    messages = server.requests[1].json()["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Looking it up."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"word": "kayak"}},
        ],
    }
    assert messages[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a small boat", "is_error": False}],
    }


async def test_usage_counts_cache_tokens_as_input(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(wire.message("hi", input_tokens=10, output_tokens=3, cache_read=100, cache_creation=20))

    response = await _model(server, retry).request(
        ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(max_tokens=64, temperature=0.0))
    )

    assert response.usage == Usage(input_tokens=130, output_tokens=3, requests=1)
    assert response.model_name == "anthropic:claude-sonnet-5"
    body = server.requests[0].json()
    assert body["max_tokens"] == 64
    assert "temperature" not in body  # the current Messages API has no temperature parameter


async def test_max_tokens_stop_reason_maps_to_length(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(wire.message("cut", stop_reason="max_tokens"))

    response = await _model(server, retry).request(_hi())

    assert response.finish_reason == "length"


async def test_rate_limit_honours_retry_after(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(
        wire.error(
            429,
            "Number of requests has exceeded your rate limit",
            type_="rate_limit_error",
            headers={"retry-after": "1"},
        ),
        wire.message("ok"),
    )
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.0, sleep=sleeps)

    response = await _model(server, policy).request(_hi())

    assert response.text == "ok"
    assert len(server.requests) == 2
    assert sleeps.waits == [1.0]


async def test_overloaded_server_error_is_retried(
    server: FakeServer, retry: RetryPolicy, sleeps: SleepRecorder
) -> None:
    server.script(wire.error(500, "Internal server error", type_="api_error"), wire.message("fine"))

    response = await _model(server, retry).request(_hi())

    assert response.text == "fine"
    assert len(server.requests) == 2
    assert len(sleeps.waits) == 1


async def test_auth_error_fails_fast(server: FakeServer, retry: RetryPolicy, sleeps: SleepRecorder) -> None:
    server.script(wire.error(401, "invalid x-api-key", type_="authentication_error"), wire.message("never"))

    with pytest.raises(ModelAuthError) as caught:
        await _model(server, retry).request(_hi())

    assert caught.value.status_code == 401
    assert caught.value.provider == "anthropic"
    assert "invalid x-api-key" in str(caught.value)
    assert len(server.requests) == 1
    assert sleeps.waits == []


async def test_timeout_is_retried_then_raised(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(*(wire.message("late") for _ in range(3)))
    for scripted in server._script:
        scripted.delay = 5.0
    policy = RetryPolicy(max_attempts=2, sleep=sleeps)

    with pytest.raises(ModelTimeoutError):
        await _model(server, policy).request(
            ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(timeout=0.2))
        )

    assert len(server.requests) == 2


async def test_streaming_text_and_tool_use(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        wire.stream(
            ["One ", "moment"],
            tool_use=("toolu_7", "lookup", ['{"wo', 'rd": ', '"fjord"}']),
            input_tokens=30,
            output_tokens=22,
            cache_read=5,
        )
    )
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)

    response = await _model(server, retry).request(
        ModelRequest(messages=[UserMessage(content="define fjord")], tools=[LOOKUP]), on_delta=on_delta
    )

    assert seen == ["One ", "moment"]
    assert response.text == "One moment"
    assert response.tool_calls == (ToolCall(id="toolu_7", name="lookup", arguments={"word": "fjord"}),)
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(input_tokens=35, output_tokens=22, requests=1)
    assert server.requests[0].json()["stream"] is True
