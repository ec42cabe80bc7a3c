"""The skip-locally / fail-in-CI rule of the service discovery."""

from __future__ import annotations

import pytest
from _pytest.outcomes import Failed, Skipped

from tests.support import services

CLOSED = "postgresql+asyncpg://postgres@127.0.0.1:9/postgres"


@pytest.mark.parametrize("value", ["", "0", "false", "False"])
def test_unreachable_skips_locally(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(Skipped):
        services.require("PostgreSQL", CLOSED)


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_unreachable_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(Failed):
        services.require("PostgreSQL", CLOSED)


def test_urls_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(services.POSTGRES_ENV, "postgresql+asyncpg://u@db:1/x")
    monkeypatch.setenv(services.AMQP_ENV, "amqp://u:p@mq:2/%2F")
    assert services.postgres_admin_url() == "postgresql+asyncpg://u@db:1/x"
    assert services.amqp_url() == "amqp://u:p@mq:2/%2F"
    with services.discover() as urls:  # explicit URLs never start containers
        assert urls == services.ServiceUrls("postgresql+asyncpg://u@db:1/x", "amqp://u:p@mq:2/%2F")
    monkeypatch.delenv(services.POSTGRES_ENV)
    monkeypatch.delenv(services.AMQP_ENV)
    assert services.postgres_admin_url() == services.DEFAULT_POSTGRES


def test_drop_refuses_other_databases() -> None:
    with pytest.raises(ValueError, match="not a test database"):
        services.drop_database(services.DEFAULT_POSTGRES, "postgresql+asyncpg://postgres@127.0.0.1/postgres")
