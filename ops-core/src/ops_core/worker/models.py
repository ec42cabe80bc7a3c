"""One model client per model string per process, so connection pools are reused across tasks.

The first model of a provider imports its SDK (openai, anthropic, google-genai): seconds of
work that, on the worker's event loop, would stall every run in the process. So a model is
built in a thread, once: concurrent first requests for one string share that build.
"""

from __future__ import annotations

import asyncio

from agentkit.models import infer_model
from agentkit.models.base import Model


class ModelCache:
    def __init__(self) -> None:
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
            built = await asyncio.to_thread(infer_model, model)
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
