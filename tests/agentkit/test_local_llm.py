"""agentkit against a real OpenAI-compatible server on this machine (docs/local-llm.md).

Runs only when ``OPSCORE_TEST_LOCAL_LLM_URL`` names the server's base URL
(ending in ``/v1``), and never in CI: the server and its weights are the
developer's, started by hand; nothing here downloads anything.
``OPSCORE_TEST_LOCAL_LLM_MODEL`` names the model (default ``local``: most
single-model servers answer to any name).
"""

from __future__ import annotations

import os

import pytest

from agentkit.agent import Agent, AgentDefinition, Limits
from agentkit.builtin_tools import calculator
from agentkit.events import RunEventType
from agentkit.hooks import RunHooks
from agentkit.models.base import ModelSettings
from agentkit.models.openai import OpenAIModel
from agentkit.outcome import RunSuccess
from tests.agentkit.helpers import EventLog

URL = os.environ.get("OPSCORE_TEST_LOCAL_LLM_URL", "")

pytestmark = [
    pytest.mark.local_llm,
    pytest.mark.skipif(not URL, reason="OPSCORE_TEST_LOCAL_LLM_URL is not set"),
    pytest.mark.skipif(bool(os.environ.get("CI")), reason="no local LLM server in CI"),
]


def _model() -> OpenAIModel:
    return OpenAIModel(os.environ.get("OPSCORE_TEST_LOCAL_LLM_MODEL", "local"), provider="vllm", base_url=URL)


_SETTINGS = ModelSettings(max_tokens=128, temperature=0.0, timeout=120)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_calling_run_completes_with_usage(stream: bool) -> None:
    model = _model()
    agent = Agent(
        AgentDefinition(
            name="calc",
            instructions="Use the calculator tool for arithmetic, then state its result.",
            tools=[calculator],
            limits=Limits(max_steps=4),
            model_settings=_SETTINGS,
        ),
        model=model,
    )
    log = EventLog()
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    hooks = RunHooks(on_event=log, on_delta=on_delta if stream else None)
    outcome = await agent.run("What is 1234 * 5678? Use the calculator.", hooks=hooks)
    await model.aclose()

    assert isinstance(outcome, RunSuccess), outcome
    results = log.of(RunEventType.TOOL_RESULT)
    assert [r.payload["name"] for r in results][:1] == ["calculator"]
    assert outcome.usage.total_tokens > 0
    assert outcome.usage.requests >= 2
    if stream:
        assert deltas
