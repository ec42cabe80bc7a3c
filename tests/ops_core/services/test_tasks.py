"""TaskService.submit: which models a deployment allows, and what one idempotency key may name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentkit import AgentDefinition
from agentkit.registry import default_registry
from ops_core.config import load_settings
from ops_core.errors import ConfigError, IdempotencyConflict, ModelNotAllowed
from ops_core.runtime import Runtime
from ops_core.services.tasks import TaskService
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT


@pytest.fixture
async def runtime(sqlite_url: str) -> AsyncIterator[Runtime]:
    opened = Runtime.open(load_settings(database_url=sqlite_url, broker_url="memory://"))
    yield opened
    await opened.close()


def service(runtime: Runtime, *agents: AgentDefinition, **settings: Any) -> TaskService:
    registry = default_registry()
    for agent in agents:
        registry.register(agent)
    return TaskService(runtime.store, runtime.quotas, runtime.publisher, registry, load_settings(**settings))


def test_an_agent_whose_model_is_not_allowed_fails_at_startup(runtime: Runtime) -> None:
    agent = AgentDefinition(name="local", model="offline:default")

    with pytest.raises(ConfigError) as caught:
        service(runtime, agent, default_model="openai:gpt-4o")
    assert "'local'" in caught.value.message
    assert "OPSCORE_ALLOWED_MODELS" in caught.value.message


async def test_an_agent_model_that_is_allowed_is_used(runtime: Runtime) -> None:
    agent = AgentDefinition(name="writer", model="anthropic:claude-x")
    tasks = service(runtime, agent, default_model="openai:gpt-4o", allowed_models="openai:*,anthropic:*")

    task, created = await tasks.submit(tenant=DEFAULT_TENANT, goal="x", agent="writer")

    assert created
    assert task.model == "anthropic:claude-x"


async def test_a_model_that_is_not_allowed_is_refused_before_anything_is_stored(runtime: Runtime) -> None:
    tasks = service(runtime, default_model="openai:gpt-4o", allowed_models="openai:gpt-4o*")

    with pytest.raises(ModelNotAllowed) as caught:
        await tasks.submit(tenant=DEFAULT_TENANT, goal="x", model="openai:o1")
    assert caught.value.status_code == 422
    assert "'openai:o1'" in caught.value.message
    assert (await runtime.store.list(tenant=EVERY_TENANT)).items == []


@pytest.mark.parametrize(
    ("first", "again", "same"),
    [
        ({"n": 1}, {"n": 1.0}, True),  # one JSON number, whichever way the database stores it
        ({"n": [1, {"a": None}]}, {"n": [1, {"a": None}]}, True),
        ({"n": 1}, {"n": True}, False),
        ({"n": 0}, {"n": False}, False),
        ({"n": [1, 2]}, {"n": [2, 1]}, False),
        ({"n": {}}, {"n": []}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
    ],
)
async def test_idempotency_compares_inputs_as_json(
    runtime: Runtime, first: dict[str, Any], again: dict[str, Any], same: bool
) -> None:
    original, _ = await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal="x", input=first, idempotency_key="k")

    if same:
        task, created = await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal="x", input=again, idempotency_key="k")
        assert (task.id, created) == (original.id, False)
    else:
        with pytest.raises(IdempotencyConflict):
            await runtime.tasks.submit(tenant=DEFAULT_TENANT, goal="x", input=again, idempotency_key="k")
