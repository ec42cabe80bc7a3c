"""One model client per model string per process, so connection pools are reused across tasks.

The first model of a provider imports its SDK (openai, anthropic, google-genai): seconds of
work that, on the worker's event loop, would stall every run in the process. So a model is
built in a thread, once: concurrent first requests for one string share that build.

An import in that thread competes for the GIL with a loop busy claiming a burst of tasks, so
it takes several times as long, and every run waiting for the model waits with it. So a worker
imports, before it takes any message, the SDKs it can expect to call (:func:`preload_sdks`);
a thread is left to build the rest, which costs milliseconds once the SDK is in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from agentkit.models import RateLimiter, configured_providers, import_sdk, infer_model, parse_model_string
from agentkit.models.base import Model

log = logging.getLogger(__name__)


def expected_providers(default_model: str, agent_models: Iterable[str | None]) -> set[str]:
    """The providers a worker can expect to call: its default model's, its agents', and every
    provider whose credentials are set in its environment."""
    named = [model for model in (default_model, *agent_models) if model is not None]
    return {parse_model_string(model)[0] for model in named} | set(configured_providers())


def preload_sdks(providers: Iterable[str]) -> None:
    """Import these providers' SDKs now, before any run waits for one (see the module docstring)."""
    for provider in sorted(providers):
        started = time.monotonic()
        if import_sdk(provider) and provider != "offline":
            log.info("imported the SDK of %s in %.2fs", provider, time.monotonic() - started)


class ModelCache:
    """Builds each model once; with a ``rate_limiter`` every model asks it before each request."""

    def __init__(self, *, rate_limiter: RateLimiter | None = None) -> None:
        self._rate_limiter = rate_limiter
        self._models: dict[str, Model] = {}
        self._building: dict[str, asyncio.Task[Model]] = {}

    async def get(self, model: str) -> Model:
        """The model ``model`` names; raises agentkit's errors for a bad string or missing key."""
        found = self._models.get(model)
        if found is not None:
            return found
        build = self._building.get(model)
        if build is None:
            build = self._building[model] = asyncio.create_task(self._build(model), name=f"build model {model}")
        # One waiter's cancellation must not cancel the build the others are waiting for.
        return await asyncio.shield(build)

    async def _build(self, model: str) -> Model:
        try:
            if self._rate_limiter is None:
                built = await asyncio.to_thread(infer_model, model)
            else:
                built = await asyncio.to_thread(infer_model, model, rate_limiter=self._rate_limiter)
        finally:
            del self._building[model]
        self._models[model] = built
        return built

    async def aclose(self) -> None:
        """Close the models' connections on the running loop (the worker's, at shutdown)."""
        # A build still under way would add a model nobody closes.
        await asyncio.gather(*self._building.values(), return_exceptions=True)
        for model in self._models.values():
            await model.aclose()
