"""Rate limits: the GCRA arithmetic, the setting's syntax, the in-process limiter, and how models and runs use one."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentkit.agent import Agent, AgentDefinition
from agentkit.events import RunEvent, RunEventType
from agentkit.hooks import RunHooks
from agentkit.messages import UserMessage
from agentkit.models import InMemoryRateLimiter, RateLimit, parse_rate_limits
from agentkit.models._retry import RetryPolicy
from agentkit.models.base import ModelRequest, ModelSettings, ToolDefinition
from agentkit.models.gcra import Bucket, extra_tokens, grant, limits_for, penalised, settled, wait_for
from agentkit.models.openai import OpenAIModel
from agentkit.models.ratelimit import DEFAULT_OUTPUT_TOKENS, RateLimitWait, estimate_tokens, report_waits
from agentkit.outcome import RunFailure, RunSuccess
from agentkit.testing import OfflineModel
from tests.agentkit.helpers import EventLog
from tests.agentkit.models.fakes import openai_wire as wire
from tests.agentkit.models.fakes.server import FakeServer

DEADLINE = 10.0


class FakeTime:
    """A clock and a sleep that moves it: a limiter's waits, taken without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def times_granted(limits: dict[str, RateLimit], start: float, count: int, tokens: int = 0) -> list[float]:
    """When ``count`` requests that each retry exactly when told get through, starting together at ``start``."""
    buckets: dict[str, Bucket] = {}
    granted, now = [], start
    while len(granted) < count:
        wait = grant(buckets, limits, now, tokens)
        if wait == 0:
            granted.append(round(now - start, 6))
        else:
            now += wait
    return granted


# ------------------------------------------------------------------------------------- arithmetic


def test_requests_are_spaced_evenly_after_a_burst() -> None:
    assert times_granted({"k": RateLimit(rpm=60)}, 0.0, 4) == [0.0, 1.0, 2.0, 3.0]
    assert times_granted({"k": RateLimit(rpm=60, burst=3)}, 0.0, 6) == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
    # The default burst is one second's worth.
    assert RateLimit(rpm=600).request_capacity == 10 and RateLimit(rpm=30).request_capacity == 1


def test_any_minute_holds_at_most_the_limit_plus_the_burst() -> None:
    granted = times_granted({"k": RateLimit(rpm=120, burst=5)}, 0.0, 400)
    for start in granted:
        in_minute = sum(1 for t in granted if start <= t < start + 60)
        assert in_minute <= 120 + 5


def test_tokens_refill_at_the_rate_into_a_bucket_of_one_minute() -> None:
    limit = {"k": RateLimit(tpm=6000)}  # 100 tokens a second, 6000 at once
    assert times_granted(limit, 0.0, 3, tokens=3000) == [0.0, 0.0, 30.0]


def test_a_request_larger_than_the_bucket_goes_when_it_is_full_and_leaves_a_debt() -> None:
    limit = RateLimit(tpm=600)  # 10 tokens a second, 600 at once
    bucket = Bucket()
    assert wait_for(bucket, limit, 0.0, 1000) == 0.0
    buckets = {"k": bucket}
    assert grant(buckets, {"k": limit}, 0.0, 1000) == 0.0
    # Charged the whole bucket; the 400 beyond it are owed once the usage is known.
    assert extra_tokens(limit, estimated=1000, used=1000) == 400
    owed = settled(buckets["k"], limit, extra_tokens(limit, 1000, 1000))
    assert wait_for(owed, limit, 0.0, 10) == pytest.approx(41.0)


def test_settling_gives_back_what_a_request_did_not_use() -> None:
    limit = RateLimit(tpm=600)
    buckets: dict[str, Bucket] = {}
    assert grant(buckets, {"k": limit}, 0.0, 600) == 0.0
    assert wait_for(buckets["k"], limit, 0.0, 300) == pytest.approx(30.0)
    refunded = settled(buckets["k"], limit, extra_tokens(limit, estimated=600, used=100))
    assert wait_for(refunded, limit, 0.0, 300) == 0.0
    assert settled(refunded, RateLimit(rpm=1), 50) == refunded  # no token limit: nothing to settle


def test_a_penalty_holds_everything_until_it_ends() -> None:
    limit = RateLimit(rpm=6000)
    bucket = penalised(Bucket(), now=10.0, seconds=5.0)
    assert wait_for(bucket, limit, 10.0, 0) == 5.0
    assert penalised(bucket, now=11.0, seconds=1.0) == bucket  # a shorter penalty never shortens one
    assert wait_for(bucket, limit, 15.0, 0) == 0.0


def test_a_request_takes_from_every_limit_or_from_none() -> None:
    limits = {"openai:m": RateLimit(rpm=6000), "openai": RateLimit(rpm=60)}
    buckets: dict[str, Bucket] = {}
    assert grant(buckets, limits, 0.0, 0) == 0.0
    before = dict(buckets)
    assert grant(buckets, limits, 0.0, 0) == pytest.approx(1.0)
    assert buckets == before  # the model's own limit had room, yet nothing was taken from it
    assert limits_for(limits, "openai:m") == limits
    assert limits_for(limits, "openai:other") == {"openai": limits["openai"]}
    assert limits_for(limits, "anthropic:x") == {}


# -------------------------------------------------------------------------------------- the setting


def test_the_compact_form_and_json_say_the_same() -> None:
    compact = parse_rate_limits("openai:gpt-4o-mini rpm=500 tpm=200000; gemini rpm=60 burst=5;")
    as_json = parse_rate_limits(
        json.dumps({"openai:gpt-4o-mini": {"rpm": 500, "tpm": 200000}, "google": {"rpm": 60, "burst": 5}})
    )
    assert (
        compact
        == as_json
        == {
            "openai:gpt-4o-mini": RateLimit(rpm=500, tpm=200000),
            "google": RateLimit(rpm=60, burst=5),
        }
    )
    # A model name may hold colons and slashes (ollama tags, openrouter paths).
    assert set(parse_rate_limits("ollama:llama3.1:8b rpm=5; openrouter:meta/llama rpm=5")) == {
        "ollama:llama3.1:8b",
        "openrouter:meta/llama",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "names no limit"),
        ("openai", "sets neither rpm nor tpm"),
        ("openai rpm=0", "rpm must be a positive number"),
        ("openai rpm=fast", "not a number"),
        ("openai rpm=60 tokens=5", "unknown tokens"),
        ("openai rpm 60", "is not NAME=VALUE"),
        ("openai tpm=100 burst=2", "burst needs rpm"),
        ("openai rpm=60 burst=1.5", "not a whole number"),
        ("openai rpm=60 burst=0", "burst must be at least 1"),
        ("nosuch rpm=60", "neither a known provider"),
        ("nosuch:model rpm=60", "unknown provider"),
        ("openai rpm=1; OpenAI rpm=2", "given twice"),
        ("{not json", "not valid JSON"),
        ('{"openai": 60}', "expected an object"),
    ],
)
def test_a_bad_setting_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_rate_limits(text)


def test_the_estimate_counts_a_quarter_of_the_characters_plus_the_output_bound() -> None:
    tool = ToolDefinition(name="t", description="d", parameters={})
    request = ModelRequest(messages=[UserMessage(content="x" * 400)], tools=[tool])
    assert estimate_tokens(request) == 101 + DEFAULT_OUTPUT_TOKENS  # 400 + len("t") + len("d") + len("{}")
    bounded = ModelRequest(messages=[UserMessage(content="x" * 400)], settings=ModelSettings(max_tokens=50))
    assert estimate_tokens(bounded) == 150


# ------------------------------------------------------------------------------ the in-process limiter


async def test_the_in_memory_limiter_waits_settles_and_penalises() -> None:
    time = FakeTime()
    limiter = InMemoryRateLimiter({"offline": RateLimit(rpm=60, tpm=600)}, clock=time.clock)
    assert limiter.covers("offline:default") and not limiter.covers("openai:gpt-4o")
    assert await limiter.acquire("offline:default", 100) == 0.0
    assert await limiter.acquire("offline:default", 100) == pytest.approx(1.0)
    time.now += 1.0
    # 450 more than estimated: 550 taken, 10 refilled since; 100 more fit once 40 have refilled (10 a second).
    await limiter.settle("offline:default", estimated=100, used=550)
    assert await limiter.acquire("offline:default", 100) == pytest.approx(4.0)
    await limiter.penalise("offline:default", 30.0)
    time.now += 5.0
    assert await limiter.acquire("offline:default", 100) == pytest.approx(25.0)


async def test_a_429_holds_the_models_own_limit_not_its_providers_other_models() -> None:
    time = FakeTime()
    limits = {"openai:m": RateLimit(rpm=6000), "openai": RateLimit(rpm=6000)}
    limiter = InMemoryRateLimiter(limits, clock=time.clock)
    await limiter.penalise("openai:m", 10.0)
    assert await limiter.acquire("openai:m", 1) == 10.0
    assert await limiter.acquire("openai:other", 1) == 0.0
    # A model without a limit of its own is held through its provider's.
    await limiter.penalise("openai:other", 5.0)
    assert await limiter.acquire("openai:another", 1) == 5.0


# ------------------------------------------------------------------------------- models and runs


def _openai(server: FakeServer, time: FakeTime, limiter: InMemoryRateLimiter) -> OpenAIModel:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.0, sleep=time.sleep)
    return OpenAIModel("m", api_key="sk-test", base_url=f"{server.url}/v1", retry=policy, rate_limiter=limiter)


async def test_a_model_asks_the_limiter_before_each_request_and_settles_the_usage(server: FakeServer) -> None:
    time = FakeTime()
    limiter = InMemoryRateLimiter({"openai:m": RateLimit(rpm=60), "openai": RateLimit(tpm=60_000)}, clock=time.clock)
    model = _openai(server, time, limiter)
    server.script(*(wire.completion("ok", prompt_tokens=10, completion_tokens=5) for _ in range(3)))
    request = ModelRequest(messages=[UserMessage(content="hi")], settings=ModelSettings(max_tokens=985))

    for _ in range(3):
        await model.request(request)

    assert time.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]
    # Each took 986 tokens (1 for "hi", 985 for its bound) and gave back all but the 15 it used:
    # a full minute's tokens are there again 15 tokens' time (15 ms) after the last request.
    assert await limiter.acquire("openai:other", 60_000) == pytest.approx(0.015)


async def test_a_429_backs_off_by_its_retry_after_and_holds_the_limit_for_everyone(server: FakeServer) -> None:
    time = FakeTime()
    limiter = InMemoryRateLimiter({"openai": RateLimit(rpm=6000)}, clock=time.clock)
    model = _openai(server, time, limiter)
    server.script(wire.error(429, "slow down", type_="rate_limit_exceeded", headers={"Retry-After": "7"}))
    server.script(wire.completion("ok"))
    waits: list[tuple[str, float]] = []

    async def listener(wait: RateLimitWait) -> None:
        waits.append((wait.reason, wait.seconds))

    with report_waits(listener):
        response = await model.request(ModelRequest(messages=[UserMessage(content="hi")]))

    assert response.text == "ok" and len(server.requests) == 2
    assert time.sleeps == [7.0]  # the backoff honoured Retry-After; the limiter then had nothing to add
    assert waits == [("provider_429", 7.0)]
    # Any other request for this provider, from anyone sharing the limiter, waits out the penalty too.
    time.now -= 3.0
    assert await limiter.acquire("openai:other", 10) == pytest.approx(3.0)


def _offline_agent(limiter: InMemoryRateLimiter) -> Agent:
    definition = AgentDefinition(name="t", instructions="", tools=[])
    return Agent(definition, OfflineModel("default", rate_limiter=limiter))


async def test_a_run_that_waits_for_its_limit_records_the_wait_as_an_event() -> None:
    limiter = InMemoryRateLimiter({"offline": RateLimit(rpm=1200, burst=1)})  # one request per 50 ms
    agent = _offline_agent(limiter)
    logs = [EventLog(), EventLog()]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(agent.run("say hello", hooks=RunHooks(on_event=log)) for log in logs)), DEADLINE
    )

    assert all(isinstance(o, RunSuccess) for o in outcomes)
    waits = [e for log in logs for e in log.of(RunEventType.RATE_LIMIT_WAIT)]
    assert len(waits) == 1, [log.types() for log in logs]
    payload = waits[0].payload
    assert payload["model"] == "offline:default" and payload["reason"] == "rate_limit"
    assert 0 < payload["seconds"] <= 0.05 and payload["message"].startswith("waiting for rate limit, ")
    waited = next(log for log in logs if log.of(RunEventType.RATE_LIMIT_WAIT))
    assert waited.types().index("rate_limit_wait") == waited.types().index("model_request") + 1


async def test_cancelling_a_run_interrupts_its_wait() -> None:
    limiter = InMemoryRateLimiter({"offline": RateLimit(rpm=60)})
    await limiter.penalise("offline:default", 3600.0)
    cancelled = asyncio.Event()

    async def on_event(event: RunEvent) -> None:
        if event.type is RunEventType.RATE_LIMIT_WAIT:
            cancelled.set()

    hooks = RunHooks(on_event=on_event, cancelled=cancelled)
    outcome = await asyncio.wait_for(_offline_agent(limiter).run("say hello", hooks=hooks), DEADLINE)
    assert isinstance(outcome, RunFailure) and outcome.error.kind == "cancelled"
