"""OpenAIModel against a local fake speaking the Chat Completions wire format."""

from __future__ import annotations

import pytest

from agentkit.errors import ModelAuthError, ModelRequestError, ModelTimeoutError
from agentkit.messages import AssistantMessage, SystemMessage, ToolCall, ToolResultMessage, Usage, UserMessage
from agentkit.models import infer_model
from agentkit.models._retry import RetryPolicy
from agentkit.models.base import ModelRequest, ModelSettings, ToolDefinition
from agentkit.models.openai import OpenAIModel
from tests.agentkit.models.fakes import openai_wire as wire
from tests.agentkit.models.fakes.server import FakeServer, SleepRecorder

WEATHER = ToolDefinition(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _model(server: FakeServer, retry: RetryPolicy) -> OpenAIModel:
    return OpenAIModel("gpt-4o-mini", api_key="sk-test", base_url=f"{server.url}/v1", retry=retry)


async def test_tool_call_round_trip(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        wire.completion(tool_calls=[("call_1", "get_weather", {"city": "Oslo"})]),
        wire.completion("It is 3°C in Oslo."),
    )
    model = _model(server, retry)
    first = ModelRequest(
        messages=[SystemMessage(content="be brief"), UserMessage(content="weather in Oslo?")], tools=[WEATHER]
    )

    response = await model.request(first)

    assert response.tool_calls == (ToolCall(id="call_1", name="get_weather", arguments={"city": "Oslo"}),)
    assert response.finish_reason == "tool_calls"
    assert response.text is None
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    body = sent.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert body["tool_choice"] == "auto"
    assert body["messages"][0] == {"role": "system", "content": "be brief"}

    second = ModelRequest(
        messages=[
            *first.messages,
            response.to_message(),
            ToolResultMessage(tool_call_id="call_1", name="get_weather", content="3°C, cloudy"),
        ],
        tools=[WEATHER],
    )
    final = await model.request(second)

    assert final.text == "It is 3°C in Oslo."
    assert final.finish_reason == "stop"
    messages = server.requests[1].json()["messages"]
    assert messages[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
        ],
    }
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "3°C, cloudy"}


async def test_usage_and_settings_are_mapped(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(wire.completion("hi", prompt_tokens=123, completion_tokens=45, finish_reason="length"))
    request = ModelRequest(
        messages=[UserMessage(content="hello")], settings=ModelSettings(temperature=0.2, max_tokens=50)
    )

    response = await _model(server, retry).request(request)

    assert response.usage == Usage(input_tokens=123, output_tokens=45, requests=1)
    assert response.finish_reason == "length"
    assert response.model_name == "openai:gpt-4o-mini"
    body = server.requests[0].json()
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 50


async def test_rate_limit_honours_retry_after(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(
        wire.error(429, "slow down", type_="rate_limit_exceeded", headers={"Retry-After": "2"}),
        wire.completion("ok"),
    )
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.0, sleep=sleeps)

    response = await _model(server, policy).request(ModelRequest(messages=[UserMessage(content="hi")]))

    assert response.text == "ok"
    assert len(server.requests) == 2
    assert sleeps.waits == [2.0]


async def test_server_error_is_retried(server: FakeServer, retry: RetryPolicy, sleeps: SleepRecorder) -> None:
    server.script(wire.error(500, "boom", type_="server_error"), wire.completion("recovered"))

    response = await _model(server, retry).request(ModelRequest(messages=[UserMessage(content="hi")]))

    assert response.text == "recovered"
    assert len(server.requests) == 2
    assert len(sleeps.waits) == 1


async def test_auth_error_fails_fast(server: FakeServer, retry: RetryPolicy, sleeps: SleepRecorder) -> None:
    server.script(wire.error(401, "Incorrect API key provided: sk-test."), wire.completion("never"))

    with pytest.raises(ModelAuthError) as caught:
        await _model(server, retry).request(ModelRequest(messages=[UserMessage(content="hi")]))

    assert caught.value.status_code == 401
    assert caught.value.provider == "openai"
    assert "Incorrect API key provided" in str(caught.value)
    assert len(server.requests) == 1
    assert sleeps.waits == []


async def test_bad_request_fails_fast(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(wire.error(400, "Invalid schema for function 'get_weather'"), wire.completion("never"))

    with pytest.raises(ModelRequestError, match="Invalid schema"):
        await _model(server, retry).request(ModelRequest(messages=[UserMessage(content="hi")]))
    assert len(server.requests) == 1


async def test_timeout_is_retried_then_raised(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(*(wire.completion("late") for _ in range(3)))
    for scripted in server._script:
        scripted.delay = 5.0
    policy = RetryPolicy(max_attempts=2, sleep=sleeps)
    request = ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(timeout=0.2))

    with pytest.raises(ModelTimeoutError) as caught:
        await _model(server, policy).request(request)

    assert caught.value.provider == "openai"
    assert len(server.requests) == 2
    assert len(sleeps.waits) == 1


async def test_streaming_deltas_and_tool_call_assembly(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        wire.stream(
            ["Let me ", "check ", "that."],
            tool_call=("call_9", "get_weather", ['{"ci', 'ty": "Os', 'lo"}']),
            prompt_tokens=21,
            completion_tokens=13,
        )
    )
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)

    response = await _model(server, retry).request(
        ModelRequest(messages=[UserMessage(content="weather?")], tools=[WEATHER]), on_delta=on_delta
    )

    assert seen == ["Let me ", "check ", "that."]
    assert response.text == "Let me check that."
    assert response.tool_calls == (ToolCall(id="call_9", name="get_weather", arguments={"city": "Oslo"}),)
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(input_tokens=21, output_tokens=13, requests=1)
    body = server.requests[0].json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_openrouter_through_infer_model(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(wire.completion("hello from a llama"))
    model = infer_model(
        "openrouter:meta-llama/llama-3.3-70b-instruct", api_key="or-key", base_url=f"{server.url}/api/v1", retry=retry
    )

    response = await model.request(
        ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(max_tokens=9))
    )

    assert model.name == "openrouter:meta-llama/llama-3.3-70b-instruct"
    assert response.text == "hello from a llama"
    sent = server.requests[0]
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer or-key"
    assert sent.json()["model"] == "meta-llama/llama-3.3-70b-instruct"
    assert sent.json()["max_tokens"] == 9


async def test_ollama_needs_no_key_and_never_sends_the_openai_one(
    server: FakeServer, retry: RetryPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.setenv("OLLAMA_BASE_URL", f"{server.url}/v1")
    server.script(wire.completion("hi from ollama"))

    model = infer_model("ollama:llama3.2", retry=retry)
    response = await model.request(ModelRequest(messages=[UserMessage(content="hi")]))

    assert response.text == "hi from ollama"
    assert "sk-must-not-leak" not in server.requests[0].headers.get("authorization", "")


async def test_assistant_text_with_no_tool_calls_is_sent_as_plain_message(
    server: FakeServer, retry: RetryPolicy
) -> None:
    server.script(wire.completion("again"))
    messages = [UserMessage(content="hi"), AssistantMessage(content="hello"), UserMessage(content="again?")]

    await _model(server, retry).request(ModelRequest(messages=messages))

    assert server.requests[0].json()["messages"][1] == {"role": "assistant", "content": "hello"}
