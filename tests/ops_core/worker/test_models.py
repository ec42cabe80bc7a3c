"""The worker's model cache: one model per model string, closed at shutdown."""

from __future__ import annotations

import pytest

from agentkit.models.openai import OpenAIModel
from ops_core.worker.models import ModelCache


async def test_one_model_per_string_and_aclose_releases_their_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    cache = ModelCache()
    model = cache.get("openai:gpt-4o-mini")
    assert cache.get("openai:gpt-4o-mini") is model
    assert isinstance(model, OpenAIModel)
    with model._clients.lease():
        pass
    assert model._clients.count() == 1

    await cache.aclose()

    assert model._clients.count() == 0
