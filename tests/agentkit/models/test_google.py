"""GoogleModel against a local fake speaking the Gemini generateContent wire format."""

from __future__ import annotations

import pytest

from agentkit.errors import ModelAuthError, ModelTimeoutError
from agentkit.messages import SystemMessage, ToolCall, ToolResultMessage, Usage, UserMessage
from agentkit.models._retry import RetryPolicy
from agentkit.models.base import ModelRequest, ModelSettings, ToolDefinition
from agentkit.models.google import GoogleModel
from tests.agentkit.models.fakes import google_wire as wire
from tests.agentkit.models.fakes.server import FakeServer, SleepRecorder

CONVERT = ToolDefinition(
    name="convert",
    description="Convert an amount between currencies.",
    parameters={
        "type": "object",
        "properties": {"amount": {"type": "number"}, "to": {"type": "string"}},
        "required": ["amount", "to"],
    },
)


def _model(server: FakeServer, retry: RetryPolicy) -> GoogleModel:
    return GoogleModel("gemini-2.5-flash", api_key="g-test", base_url=server.url, retry=retry)


def _hi() -> ModelRequest:
    return ModelRequest(messages=[UserMessage(content="hi")])


async def test_function_call_round_trip(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        wire.generate(function_calls=(("fc-1", "convert", {"amount": 10, "to": "EUR"}),)),
        wire.generate("10 USD is 9.2 EUR."),
    )
    model = _model(server, retry)
    first = ModelRequest(
        messages=[SystemMessage(content="You convert money."), UserMessage(content="10 USD in EUR?")],
        tools=[CONVERT],
    )

    response = await model.request(first)

    assert response.tool_calls == (ToolCall(id="fc-1", name="convert", arguments={"amount": 10, "to": "EUR"}),)
    assert response.finish_reason == "tool_calls"
    sent = server.requests[0]
    assert sent.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert sent.headers["x-goog-api-key"] == "g-test"
    body = sent.json()
    assert body["systemInstruction"]["parts"] == [{"text": "You convert money."}]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "10 USD in EUR?"}]}]
    (declaration,) = body["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "convert"
    assert declaration["description"] == "Convert an amount between currencies."
    # Proto JSON accepts either spelling; this SDK generation sends the snake_case one.
    schema = declaration.get("parametersJsonSchema", declaration.get("parameters_json_schema"))
    assert schema == CONVERT.parameters

    second = ModelRequest(
        messages=[
            *first.messages,
            response.to_message(),
            ToolResultMessage(tool_call_id="fc-1", name="convert", content="9.2"),
        ],
        tools=[CONVERT],
    )
    final = await model.request(second)

    assert final.text == "10 USD is 9.2 EUR."
    assert final.finish_reason == "stop"
    contents = server.requests[1].json()["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"id": "fc-1", "name": "convert", "args": {"amount": 10, "to": "EUR"}}}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"id": "fc-1", "name": "convert", "response": {"result": "9.2"}}}],
    }


async def test_function_call_without_id_gets_a_local_id_that_is_not_sent_back(
    server: FakeServer, retry: RetryPolicy
) -> None:
    server.script(wire.generate(function_calls=((None, "convert", {"amount": 1, "to": "JPY"}),)), wire.generate("ok"))
    model = _model(server, retry)
    first = ModelRequest(messages=[UserMessage(content="1 USD in JPY?")], tools=[CONVERT])

    response = await model.request(first)
    (call,) = response.tool_calls
    assert call.id  # agentkit pairs results by id, so one is always present
    await model.request(
        ModelRequest(
            messages=[
                *first.messages,
                response.to_message(),
                ToolResultMessage(tool_call_id=call.id, name="convert", content="150", is_error=False),
            ]
        )
    )

    contents = server.requests[1].json()["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "convert", "args": {"amount": 1, "to": "JPY"}}}]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "convert", "response": {"result": "150"}}}]


async def test_usage_and_settings_are_mapped(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        wire.generate("hi", prompt_tokens=40, candidates_tokens=8, thoughts_tokens=5, finish_reason="MAX_TOKENS")
    )

    response = await _model(server, retry).request(
        ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(temperature=0.5, max_tokens=30))
    )

    assert response.usage == Usage(input_tokens=40, output_tokens=13, requests=1)
    assert response.finish_reason == "length"
    assert response.model_name == "google:gemini-2.5-flash"
    config = server.requests[0].json()["generationConfig"]
    assert config["temperature"] == 0.5
    assert config["maxOutputTokens"] == 30


async def test_rate_limit_honours_retry_after(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(
        wire.error(429, "Resource has been exhausted", status_name="RESOURCE_EXHAUSTED", headers={"Retry-After": "1"}),
        wire.generate("ok"),
    )
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.0, sleep=sleeps)

    response = await _model(server, policy).request(_hi())

    assert response.text == "ok"
    assert len(server.requests) == 2
    assert sleeps.waits == [1.0]


async def test_server_error_is_retried(server: FakeServer, retry: RetryPolicy, sleeps: SleepRecorder) -> None:
    server.script(wire.error(500, "An internal error has occurred", status_name="INTERNAL"), wire.generate("back"))

    response = await _model(server, retry).request(_hi())

    assert response.text == "back"
    assert len(server.requests) == 2
    assert len(sleeps.waits) == 1


async def test_auth_error_fails_fast(server: FakeServer, retry: RetryPolicy, sleeps: SleepRecorder) -> None:
    server.script(
        wire.error(401, "API key not valid. Please pass a valid API key.", status_name="UNAUTHENTICATED"),
        wire.generate("never"),
    )

    with pytest.raises(ModelAuthError) as caught:
        await _model(server, retry).request(_hi())

    assert caught.value.status_code == 401
    assert caught.value.provider == "google"
    assert "API key not valid" in str(caught.value)
    assert len(server.requests) == 1
    assert sleeps.waits == []


async def test_timeout_is_retried_then_raised(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(*(wire.generate("late") for _ in range(3)))
    for scripted in server._script:
        scripted.delay = 5.0
    policy = RetryPolicy(max_attempts=2, sleep=sleeps)

    with pytest.raises(ModelTimeoutError):
        await _model(server, policy).request(
            ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(timeout=0.2))
        )

    assert len(server.requests) == 2


async def test_streaming_text_and_function_call(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        wire.stream(
            ["Con", "verting", "..."],
            function_call=("fc-s", "convert", {"amount": 3, "to": "GBP"}),
            prompt_tokens=17,
            candidates_tokens=25,
        )
    )
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)

    response = await _model(server, retry).request(
        ModelRequest(messages=[UserMessage(content="3 USD in GBP")], tools=[CONVERT]), on_delta=on_delta
    )

    assert seen == ["Con", "verting", "..."]
    assert response.text == "Converting..."
    assert response.tool_calls == (ToolCall(id="fc-s", name="convert", arguments={"amount": 3, "to": "GBP"}),)
    assert response.usage == Usage(input_tokens=17, output_tokens=25, requests=1)
    sent = server.requests[0]
    assert sent.path.endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert sent.query["alt"] == ["sse"]
