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


async def test_sequential_requests_share_one_client() -> None:
    built: list[_Client] = []

    def build() -> _Client:
        built.append(_Client())
        return built[-1]

    clients = LoopClients(build, _close)
    with clients.lease() as first:
        pass
    with clients.lease() as second:
        pass
    assert first is second and len(built) == 1


async def test_a_new_client_only_when_every_client_is_full() -> None:
    clients = LoopClients(_Client, _close, per_client=2)
    with clients.lease() as a, clients.lease() as b:
        assert a is b and clients.count() == 1
        with clients.lease() as c:
            assert c is not a and clients.count() == 2
            with clients.lease() as d:
                # The least busy client: the new one has one request, the first has two.
                assert d is c
    with clients.lease() as e:
        assert e in (a, c) and clients.count() == 2


def test_each_event_loop_gets_its_own_client() -> None:
    clients = LoopClients(_Client, _close)

    async def current() -> _Client:
        with clients.lease() as client:
            return client

    assert asyncio.run(current()) is not asyncio.run(current())


def test_clients_are_closed_when_asyncio_run_ends_without_aclose() -> None:
    clients = LoopClients(_Client, _close)

    async def lease() -> _Client:
        with clients.lease() as client:
            return client

    client = asyncio.run(lease())
    assert client.closed


async def test_aclose_closes_the_running_loops_clients_and_new_ones_are_built_after() -> None:
    clients = LoopClients(_Client, _close, per_client=1)
    with clients.lease() as a, clients.lease() as b:
        pass
    await clients.aclose()
    assert a.closed and b.closed
    with clients.lease() as fresh:
        assert fresh is not a and fresh is not b


async def test_openai_model_reuses_one_sdk_client_across_requests(server: FakeServer, retry: RetryPolicy) -> None:
    server.script(wire.completion("first"), wire.completion("second"))
    model = OpenAIModel("gpt-4o-mini", api_key="sk-test", base_url=f"{server.url}/v1", retry=retry)
    request = ModelRequest(messages=[UserMessage(content="hello")])

    assert (await model.request(request)).text == "first"
    assert (await model.request(request)).text == "second"

    assert model._clients.count() == 1
    await model.aclose()


async def test_openai_and_anthropic_use_the_sdks_aiohttp_transport() -> None:
    # The provider extras install aiohttp; the SDKs' httpx transport costs twice the CPU per request.
    from openai import DefaultAioHttpClient as OpenAIAioHttp

    from agentkit.models.anthropic import AnthropicModel

    openai_model = OpenAIModel("gpt-4o-mini", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    anthropic_model = AnthropicModel("claude-test", api_key="sk-test", base_url="http://127.0.0.1:9")
    with openai_model._clients.lease() as openai_client, anthropic_model._clients.lease() as anthropic_client:
        assert isinstance(openai_client._client, OpenAIAioHttp)
        assert type(anthropic_client._client).__name__ == "_DefaultAioHttpClient"
    await openai_model.aclose()
    await anthropic_model.aclose()
