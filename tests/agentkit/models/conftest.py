"""Fixtures shared by the provider-client tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentkit.models._retry import RetryPolicy
from tests.agentkit.models.fakes.server import FakeServer, SleepRecorder


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer() as fake:
        yield fake


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def retry(sleeps: SleepRecorder) -> RetryPolicy:
    return RetryPolicy(max_attempts=3, sleep=sleeps)
