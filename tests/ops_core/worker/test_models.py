"""The worker's model cache: one model per model string, built off the loop, closed at shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agentkit.errors import UnknownProviderError
from agentkit.models import infer_model
from agentkit.models.base import Model
from agentkit.models.openai import OpenAIModel
from agentkit.testing import OfflineModel
from ops_core.worker import models as models_module
from ops_core.worker.models import ModelCache
from tests.support.waiting import wait_for

DEADLINE = 5.0


async def test_one_model_per_string_and_aclose_releases_their_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    cache = ModelCache()
    model = await cache.get("openai:gpt-4o-mini")
    assert await cache.get("openai:gpt-4o-mini") is model
    assert isinstance(model, OpenAIModel)
    with model._clients.lease():
        pass
    assert model._clients.count() == 1

    await cache.aclose()

    assert model._clients.count() == 0


class SlowBuild:
    """Stands in for ``infer_model`` with a build that blocks its thread until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[str] = []
        self.released: list[bool] = []

    def __call__(self, model: str) -> Model:
        self.threads.append(threading.current_thread().name)
        self.released.append(self.release.wait(DEADLINE))
        return ClosingModel(model)


class ClosingModel(OfflineModel):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_the_loop_keeps_running_while_a_model_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    build = SlowBuild()
    monkeypatch.setattr(models_module, "infer_model", build)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    getting = asyncio.create_task(ModelCache().get("offline:slow"))
    try:
        await wait_for(lambda: asyncio.sleep(0, build.threads), bool, timeout=DEADLINE, what="the build to start")
        # Built on the loop, the build would hold it until released: the ticker could not move.
        before = ticks
        await wait_for(lambda: asyncio.sleep(0, ticks), lambda n: n >= before + 5, timeout=DEADLINE, what="ticks")
        assert not getting.done()
        build.release.set()
        model = await asyncio.wait_for(getting, DEADLINE)
    finally:
        build.release.set()
        ticking.cancel()
    assert model.name == "offline:slow" and build.released == [True]
    assert build.threads != [threading.current_thread().name]


async def test_concurrent_first_requests_share_one_build(monkeypatch: pytest.MonkeyPatch) -> None:
    build = SlowBuild()
    monkeypatch.setattr(models_module, "infer_model", build)
    cache = ModelCache()
    waiters = [asyncio.create_task(cache.get("offline:shared")) for _ in range(5)]
    other = asyncio.create_task(cache.get("offline:other"))
    await wait_for(lambda: asyncio.sleep(0, len(build.threads)), lambda n: n == 2, timeout=DEADLINE, what="builds")
    waiters[0].cancel()  # one caller giving up must not cancel the build the others wait on
    build.release.set()
    models = await asyncio.wait_for(asyncio.gather(*waiters[1:], other), DEADLINE)

    assert len(build.threads) == 2  # one per model string
    assert len({id(m) for m in models[:-1]}) == 1 and models[0].name == "offline:shared"
    assert models[-1].name == "offline:other"
    assert await cache.get("offline:shared") is models[0] and len(build.threads) == 2
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]


async def test_a_failed_build_raises_to_every_caller_and_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def failing(model: str) -> Model:
        nonlocal calls
        calls += 1
        return infer_model(model)

    monkeypatch.setattr(models_module, "infer_model", failing)
    cache = ModelCache()
    results = await asyncio.gather(cache.get("nope:x"), cache.get("nope:x"), return_exceptions=True)
    assert [type(r) for r in results] == [UnknownProviderError, UnknownProviderError] and calls == 1
    with pytest.raises(UnknownProviderError):
        await cache.get("nope:x")
    assert calls == 2


async def test_aclose_waits_for_a_build_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    build = SlowBuild()
    monkeypatch.setattr(models_module, "infer_model", build)
    cache = ModelCache()
    getting = asyncio.create_task(cache.get("offline:late"))
    await wait_for(lambda: asyncio.sleep(0, build.threads), bool, timeout=DEADLINE, what="the build to start")
    closing = asyncio.create_task(cache.aclose())
    build.release.set()
    await asyncio.wait_for(closing, DEADLINE)
    late = await getting
    assert isinstance(late, ClosingModel) and late.closed


def test_a_worker_expects_its_default_its_agents_and_its_credentialed_providers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ops_core.worker.models import expected_providers

    for name in ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert expected_providers("offline:default", ["openai:gpt-4o-mini", None]) == {"offline", "openai", "anthropic"}
