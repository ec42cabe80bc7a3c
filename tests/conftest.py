"""Session-wide test setup shared by every suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentkit.models import _guard


@pytest.fixture(autouse=True, scope="session")
def _block_real_model_requests() -> Iterator[None]:
    """No test may reach a real LLM provider; loopback fakes stay reachable."""
    with _guard.block_real_requests():
        yield


# Database fixtures (service_urls, pg_admin_url, pg_url, sqlite_url); see tests/support/databases.py.
from tests.support.databases import _sqlite_template, pg_admin_url, pg_url, service_urls, sqlite_url  # noqa: E402, F401
