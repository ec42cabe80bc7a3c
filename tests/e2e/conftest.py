"""The live deployment the end-to-end suite drives: a fresh database and queue, the API and two workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ops_core.db import migrate
from tests.e2e.stack import Deployment, Stack, stack_env
from tests.support import services
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import free_port
from tests.support.queues import delete_queues, dramatiq_queue_names

WORKERS = 2


@pytest.fixture(scope="session")
def amqp_url(service_urls: services.ServiceUrls) -> str:
    return services.require("RabbitMQ", service_urls.amqp)


@pytest.fixture(scope="module")
def deployment(pg_admin_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    database_url = services.create_database(pg_admin_url)
    queue_name = f"opscore.e2e.{uuid.uuid4().hex[:12]}"
    fake = FakeOpenAI().start(free_port())
    deployment = Deployment(stack_env(database_url, amqp_url, queue_name, fake), tmp_path_factory.mktemp("logs"), fake)
    try:
        migrate.upgrade(database_url)
        deployment.start_api()
        for _ in range(WORKERS):
            deployment.start_worker()
        deployment.wait_ready()
        deployment.wait_workers(WORKERS)
        yield deployment
    finally:
        deployment.stop()
        fake.stop()
        delete_queues(amqp_url, dramatiq_queue_names(queue_name))
        services.drop_database(pg_admin_url, database_url)


@pytest.fixture
async def stack(deployment: Deployment) -> AsyncIterator[Stack]:
    async with httpx.AsyncClient(base_url=deployment.api_url, timeout=30) as client:
        yield Stack(deployment, client)
