"""One model client per model string per process, so connection pools are reused across tasks."""

from __future__ import annotations

from agentkit.models import infer_model
from agentkit.models.base import Model


class ModelCache:
    def __init__(self) -> None:
        self._models: dict[str, Model] = {}

    def get(self, model: str) -> Model:
        found = self._models.get(model)
        if found is None:
            found = self._models[model] = infer_model(model)
        return found

    async def aclose(self) -> None:
        """Close the models' connections on the running loop (the worker's, at shutdown)."""
        for model in self._models.values():
            await model.aclose()
