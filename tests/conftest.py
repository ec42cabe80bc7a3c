"""Session-wide test setup shared by every suite."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from agentkit.models import _guard


@pytest.fixture(autouse=True, scope="session")
def _block_real_model_requests() -> Iterator[None]:
    """No test may reach a real LLM provider; loopback fakes stay reachable."""
    with _guard.block_real_requests():
        yield


# Random values in a parameter (a fresh task id, a new key) would give each xdist process other test ids,
# and xdist refuses to run when its processes collect different tests.
_RANDOM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|opsk_[0-9a-f]{16}_[\w-]+")


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    if isinstance(val, str) and _RANDOM.search(val):
        return _RANDOM.sub("<random>", val)
    return None


# Database fixtures (service_urls, pg_admin_url, pg_url, sqlite_url); see tests/support/databases.py.
from tests.support.databases import _sqlite_template, pg_admin_url, pg_url, service_urls, sqlite_url  # noqa: E402, F401
