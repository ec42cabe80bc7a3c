"""Models keep one SDK client per event loop instead of building one per request."""

from __future__ import annotations

import asyncio

from agentkit.messages import UserMessage
from agentkit.models._clients import LoopClients
from agentkit.models._retry import RetryPolicy
from agentkit.models.base import ModelRequest
from agentkit.models.openai import OpenAIModel
from tests.agentkit.models.fakes import openai_wire as wire
from tests.agentkit.models.fakes.server import FakeServer


class _Client:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def _close(client: _Client) -> None:
    await client.close()


async def test_one_client_per_running_loop_is_reused() -> None:
    built: list[_Client] = []

    def build() -> _Client:
        built.append(_Client())
        return built[-1]

    clients = LoopClients(build, _close)
    assert clients.get() is clients.get()
    assert len(built) == 1


def test_each_event_loop_gets_its_own_client() -> None:
    clients = LoopClients(_Client, _close)

    async def current() -> _Client:
        return clients.get()

    first = asyncio.run(current())
    second = asyncio.run(current())
    assert first is not second


async def test_aclose_closes_the_running_loops_client_and_a_new_one_is_built_after() -> None:
    clients = LoopClients(_Client, _close)
    client = clients.get()
    await clients.aclose()
    assert client.closed
    assert clients.get() is not client


async def test_openai_model_reuses_one_sdk_client_across_requests(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(wire.completion("first"), wire.completion("second"))
    model = OpenAIModel("gpt-4o-mini", api_key="sk-test", base_url=f"{server.url}/v1", retry=retry)
    request = ModelRequest(messages=[UserMessage(content="hello")])

    assert (await model.request(request)).text == "first"
    client = model._clients.get()
    assert (await model.request(request)).text == "second"

    assert model._clients.get() is client
    await model.aclose()
