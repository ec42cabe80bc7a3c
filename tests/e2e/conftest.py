"""The live deployment the end-to-end suite drives: a fresh database and queue, the API and two workers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import pytest

from tests.e2e.stack import Deployment, Stack, launch
from tests.support import services

WORKERS = 2


@pytest.fixture(scope="session")
def amqp_url(service_urls: services.ServiceUrls) -> str:
    return services.require("RabbitMQ", service_urls.amqp)


@pytest.fixture(scope="module")
def deployment(pg_admin_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with launch(pg_admin_url, amqp_url, tmp_path_factory.mktemp("logs"), workers=WORKERS) as deployment:
        yield deployment


class DeploymentFactory(Protocol):
    def __call__(self, *, workers: int = 2, proxied: bool = False, env: dict[str, str] | None = None) -> Deployment: ...


@pytest.fixture(scope="module")
def deployments(
    pg_admin_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeploymentFactory]:
    """Builds extra deployments of a module's own (e.g. proxied, for fault injection); all stopped at its end."""
    with contextlib.ExitStack() as opened:

        def make(*, workers: int = 2, proxied: bool = False, env: dict[str, str] | None = None) -> Deployment:
            log_dir = tmp_path_factory.mktemp("logs")
            return opened.enter_context(
                launch(pg_admin_url, amqp_url, log_dir, workers=workers, proxied=proxied, env=env)
            )

        yield make


@pytest.fixture
async def stack(deployment: Deployment) -> AsyncIterator[Stack]:
    async with deployment.client() as client:
        yield Stack(deployment, client)
