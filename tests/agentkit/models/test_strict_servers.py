"""Provider clients against fakes as strict as real servers (issue 13).

Each test reproduces one way agentkit failed against a real OpenAI-compatible
server (llama-cpp-python) or a dead address, using a fake that behaves the way
that server does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import openai
import pytest

from agentkit import tools as agentkit_tools
from agentkit.agent import Agent, AgentDefinition, Limits
from agentkit.errors import (
    ModelConnectionError,
    ModelFailed,
    ModelRequestError,
    ModelServerError,
    ModelTimeoutError,
    UsageLimitExceeded,
)
from agentkit.events import RunEventType
from agentkit.hooks import RunHooks
from agentkit.messages import UserMessage
from agentkit.models import _guard
from agentkit.models._retry import RetryPolicy
from agentkit.models.anthropic import AnthropicModel
from agentkit.models.base import Model, ModelRequest, ModelSettings
from agentkit.models.google import GoogleModel
from agentkit.models.openai import OpenAIModel
from agentkit.outcome import RunFailure, RunSuccess
from tests.agentkit.helpers import EventLog
from tests.agentkit.models.fakes import anthropic_wire, google_wire, openai_wire
from tests.agentkit.models.fakes.server import FakeServer, Scripted, SleepRecorder, plain_http_url, refusing_url

multiplied: list[tuple[int, int]] = []


@agentkit_tools.tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    multiplied.append((a, b))
    return a * b


def _calculator(limits: Limits | None = None) -> AgentDefinition:
    return AgentDefinition(
        name="calc", instructions="Use the multiply tool.", tools=[multiply], limits=limits or Limits()
    )


def _vllm(url: str, retry: RetryPolicy) -> OpenAIModel:
    return OpenAIModel("smollm2", provider="vllm", base_url=url, retry=retry)


async def _deltas(model: Model, request: ModelRequest) -> Any:
    async def ignore(text: str) -> None:
        pass

    return await model.request(request, on_delta=ignore)


def _hi(timeout: float = 60.0) -> ModelRequest:
    return ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(timeout=timeout))


# ------------------------------------------------------------------ the strict fake itself


async def test_the_strict_fake_rejects_null_content_and_hides_tools_without_tool_choice() -> None:
    # The fake must fail the old requests, or the tests below could not fail.
    async with FakeServer(strict=openai_wire.LlamaCppPython()) as server:
        server.script(openai_wire.completion("never"), openai_wire.completion(tool_calls=(("c", "multiply", {}),)))
        client = openai.AsyncOpenAI(api_key="x", base_url=f"{server.url}/v1", max_retries=0)
        tools: Any = [{"type": "function", "function": {"name": "multiply", "parameters": {"type": "object"}}}]
        null_turn: Any = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
        with pytest.raises(openai.InternalServerError, match="Input should be a valid string"):
            await client.chat.completions.create(model="m", messages=null_turn)
        answer = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=tools
        )
        assert answer.choices[0].message.tool_calls is None
        assert answer.choices[0].message.content == openai_wire.NO_TOOLS_ANSWER
        await client.close()


# ------------------------------------------------------------- 1 and 2: tools on llama-cpp


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_calling_run_completes_on_a_llama_cpp_like_server(retry: RetryPolicy, stream: bool) -> None:
    multiplied.clear()
    async with FakeServer(strict=openai_wire.LlamaCppPython()) as server:
        if stream:
            server.script(
                openai_wire.stream([], tool_call=("call_a", "multiply", ['{"a": 6,', ' "b": 7}'])),
                openai_wire.stream(["6 times 7 ", "is 42."]),
            )
        else:
            server.script(
                openai_wire.completion(tool_calls=(("call_a", "multiply", {"a": 6, "b": 7}),)),
                openai_wire.completion("6 times 7 is 42."),
            )
        hooks = RunHooks(on_delta=(lambda _: asyncio.sleep(0)) if stream else None)

        outcome = await Agent(_calculator(), model=_vllm(f"{server.url}/v1", retry)).run("6*7?", hooks=hooks)

    assert isinstance(outcome, RunSuccess), outcome
    assert multiplied == [(6, 7)]
    assert outcome.text == "6 times 7 is 42."
    first, second = (r.json() for r in server.requests)
    assert first["tool_choice"] == "auto"
    assert second["messages"][-2]["content"] == ""


async def test_anthropic_and_google_say_tool_choice_auto_too(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(anthropic_wire.message("15"), google_wire.generate("36"))
    for model in (
        AnthropicModel("claude", api_key="k", base_url=server.url, retry=retry),
        GoogleModel("gemini", api_key="k", base_url=server.url, retry=retry),
    ):
        assert isinstance(await Agent(_calculator(), model=model).run("x"), RunSuccess)
        await model.aclose()

    anthropic_body, google_body = (r.json() for r in server.requests)
    assert anthropic_body["tool_choice"] == {"type": "auto"}
    config = google_body["toolConfig"]["functionCallingConfig"]
    assert config["mode"] == "AUTO"


# ------------------------------------------------------------------------ 3: empty streams


_EMPTY_THEN_GOOD: dict[str, Callable[[FakeServer, RetryPolicy], tuple[Model, list[Scripted]]]] = {
    "openai": lambda s, r: (
        _vllm(f"{s.url}/v1", r),
        [openai_wire.empty_stream(), Scripted(sse=["data: [DONE]\n\n"]), openai_wire.stream(["ok"])],
    ),
    "anthropic": lambda s, r: (
        AnthropicModel("claude", api_key="k", base_url=s.url, retry=r),
        [anthropic_wire.empty_stream(), anthropic_wire.empty_stream(), anthropic_wire.stream(["ok"])],
    ),
    "google": lambda s, r: (
        GoogleModel("gemini", api_key="k", base_url=s.url, retry=r),
        [google_wire.empty_stream(), google_wire.empty_stream(), google_wire.stream(["ok"])],
    ),
}


@pytest.mark.parametrize("family", sorted(_EMPTY_THEN_GOOD))
async def test_an_empty_stream_is_a_retryable_failure(server: FakeServer, sleeps: SleepRecorder, family: str) -> None:
    model, answers = _EMPTY_THEN_GOOD[family](server, RetryPolicy(max_attempts=3, sleep=sleeps))
    server.script(*answers)

    response = await _deltas(model, _hi())

    assert response.text == "ok"
    assert len(server.requests) == 3
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize("family", sorted(_EMPTY_THEN_GOOD))
async def test_a_run_whose_streams_stay_empty_fails_instead_of_answering_nothing(
    server: FakeServer, family: str
) -> None:
    model, answers = _EMPTY_THEN_GOOD[family](server, RetryPolicy(max_attempts=1))
    server.script(answers[0])

    outcome = await Agent(_calculator(), model=model).run("x", hooks=RunHooks(on_delta=lambda _: asyncio.sleep(0)))

    assert isinstance(outcome, RunFailure)
    assert isinstance(outcome.error, ModelFailed) and isinstance(outcome.error.cause, ModelServerError)
    assert outcome.error.retryable
    assert "empty response" in str(outcome.error)


# --------------------------------------------------------------------- 4: unreported usage


async def test_usage_is_estimated_when_the_stream_reports_none(retry: RetryPolicy) -> None:
    async with FakeServer(strict=openai_wire.LlamaCppPython()) as server:
        server.script(openai_wire.stream(["The answer ", "is 42."], prompt_tokens=300, completion_tokens=200))
        response = await _deltas(_vllm(f"{server.url}/v1", retry), _hi())

    assert response.usage.estimated and response.usage.estimated_requests == 1
    # "is 42." plus "The answer " is 17 characters: 5 tokens at 4 characters a token, rounded up.
    assert response.usage.output_tokens == 5
    assert response.usage.input_tokens > 0


async def test_google_usage_is_estimated_when_usage_metadata_is_missing(server: FakeServer, retry: RetryPolicy) -> None:
    answer = google_wire.generate("twelve chars")
    assert isinstance(answer.body, dict)
    del answer.body["usageMetadata"]
    server.script(answer)

    response = await GoogleModel("gemini", api_key="k", base_url=server.url, retry=retry).request(_hi())

    assert response.usage.estimated
    assert response.usage.output_tokens == 3


async def test_token_limits_hold_on_estimated_usage_and_events_say_estimated(retry: RetryPolicy) -> None:
    multiplied.clear()
    async with FakeServer(strict=openai_wire.LlamaCppPython()) as server:
        server.script(
            openai_wire.stream([], tool_call=("call_a", "multiply", ['{"a": 2, "b": 3}'])),
            openai_wire.stream(["never asked"]),
        )
        log = EventLog()
        hooks = RunHooks(on_event=log, on_delta=lambda _: asyncio.sleep(0))
        agent = Agent(_calculator(Limits(max_total_tokens=20)), model=_vllm(f"{server.url}/v1", retry))

        outcome = await agent.run("2*3?", hooks=hooks)

    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, UsageLimitExceeded)
    assert len(server.requests) == 1
    assert outcome.usage.estimated and outcome.usage.total_tokens >= 20
    (response,) = log.of(RunEventType.MODEL_RESPONSE)
    assert response.payload["usage"]["estimated"] is True


# ------------------------------------------------------------ 5 and 6: transport failures


def _family_model(family: str, url: str, retry: RetryPolicy) -> Model:
    if family == "openai":
        return OpenAIModel("m", provider="vllm", base_url=f"{url}/v1", retry=retry)
    if family == "anthropic":
        return AnthropicModel("m", api_key="k", base_url=url, retry=retry)
    return GoogleModel("m", api_key="k", base_url=url, retry=retry)


FAMILIES = ["openai", "anthropic", "google"]


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_refused_connection_is_a_connection_error_not_a_timeout(family: str, sleeps: SleepRecorder) -> None:
    with refusing_url() as url:
        model = _family_model(family, url, RetryPolicy(max_attempts=3, sleep=sleeps))
        with pytest.raises(ModelConnectionError, match="connection refused") as caught:
            await model.request(_hi())
        await model.aclose()

    assert url in str(caught.value)
    assert "did not answer" not in str(caught.value)
    assert len(sleeps.waits) == 2  # retried like any dropped connection


@pytest.mark.parametrize("family", FAMILIES)
async def test_an_unknown_host_is_a_connection_error_that_says_so(
    family: str, retry: RetryPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The resolver itself answers "unknown", so no lookup leaves the machine.
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "llm.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with _guard.block_real_requests():
        _guard.allow_model_requests(True)  # restored when the block ends
        model = _family_model(family, "http://llm.invalid:8000", retry)
        with pytest.raises(ModelConnectionError, match="cannot resolve the host"):
            await model.request(_hi())
        await model.aclose()


@pytest.mark.parametrize("family", FAMILIES)
async def test_tls_to_a_plain_http_server_is_a_tls_failure(family: str, retry: RetryPolicy) -> None:
    async with plain_http_url() as url:
        model = _family_model(family, url, retry)
        with pytest.raises(ModelConnectionError, match="TLS failure"):
            await model.request(_hi())
        await model.aclose()


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_slow_server_is_still_a_timeout(family: str, server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(*(Scripted(body={}, delay=5.0) for _ in range(2)))
    model = _family_model(family, server.url, RetryPolicy(max_attempts=2, sleep=sleeps))

    with pytest.raises(ModelTimeoutError, match=r"did not answer within 0\.2s"):
        await model.request(_hi(timeout=0.2))
    await model.aclose()


@pytest.mark.parametrize("family", FAMILIES)
async def test_agent_run_never_raises_on_a_refused_port(family: str, sleeps: SleepRecorder) -> None:
    with refusing_url() as url:
        model = _family_model(family, url, RetryPolicy(max_attempts=2, sleep=sleeps))
        outcome = await Agent(_calculator(), model=model).run("x")
        await model.aclose()

    assert isinstance(outcome, RunFailure)
    assert isinstance(outcome.error, ModelFailed) and isinstance(outcome.error.cause, ModelConnectionError)
    assert outcome.error.retryable
    assert len(sleeps.waits) == 1


# ------------------------------------------------------------------------- 7: a bare 404


async def test_a_404_carries_the_servers_body_and_hints_at_v1(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(
        Scripted(status=404, body={"detail": "Not Found"}), Scripted(status=404, body={"detail": "Not Found"})
    )

    with pytest.raises(ModelRequestError) as without_v1:
        await _vllm(server.url, retry).request(_hi())
    with pytest.raises(ModelRequestError) as with_v1:
        await _vllm(f"{server.url}/v1", retry).request(_hi())

    assert "HTTP 404: Not Found" in str(without_v1.value)
    assert "no /v1 path segment" in str(without_v1.value)
    assert "/v1" not in str(with_v1.value).split("Not Found", 1)[1]
    assert len(server.requests) == 2  # a 404 is not retried


# ------------------------------------------------------- 8: a validation error sent as 500


async def test_the_error_event_carries_the_servers_message_for_a_500(server: FakeServer, sleeps: SleepRecorder) -> None:
    server.script(
        openai_wire.completion(tool_calls=(("call_a", "multiply", {"a": 1, "b": 1}),)),
        *(openai_wire.validation_error(2) for _ in range(4)),
    )
    model = _vllm(f"{server.url}/v1", RetryPolicy(max_attempts=4, sleep=sleeps))
    log = EventLog()

    outcome = await Agent(_calculator(), model=model).run("1*1?", hooks=RunHooks(on_event=log))

    assert isinstance(outcome, RunFailure)
    assert len(server.requests) == 5  # one step, then 4 attempts at the second: the status is the server's word
    (error,) = log.of(RunEventType.ERROR)
    assert "HTTP 500" in error.payload["message"]
    assert (
        "messages.2.ChatCompletionRequestAssistantMessage.content: Input should be a valid string"
        in (error.payload["message"])
    )
    assert "Input should be 'system'" not in error.payload["message"]  # the union members ruled out by role
    assert error.payload["status_code"] == 500
    assert error.step == 2  # 9: the step in flight, not the last finished one
    assert outcome.steps == 1
