"""Settings: every one documented in the README, and a bad value fails at startup naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops_core.config import Settings, load_settings
from ops_core.errors import ConfigError

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented_in_the_readme(field: str) -> None:
    assert f"`OPSCORE_{field.upper()}`" in README


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in Settings.model_fields:
        monkeypatch.delenv(f"OPSCORE_{field.upper()}", raising=False)
    settings = load_settings()
    assert settings.is_sqlite and settings.is_memory_broker
    assert settings.default_model.startswith("offline:")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPSCORE_DATABASE_URL", "mysql://root@localhost/db"),
        ("OPSCORE_BROKER_URL", "redis://localhost:6379"),
        ("OPSCORE_DEFAULT_MODEL", "acme:gpt-9"),
        ("OPSCORE_PORT", "not-a-port"),
        ("OPSCORE_WORKER_CONCURRENCY", "0"),
        ("OPSCORE_WORKER_THREADS", "0"),
        ("OPSCORE_LEASE_SECONDS", "-1"),
        ("OPSCORE_LOG_LEVEL", "LOUD"),
        ("OPSCORE_QUEUE_NAME", "has spaces"),
        ("OPSCORE_FORWARDED_ALLOW_IPS", "10.0.0.1, proxy.example"),
        ("OPSCORE_MAX_HEADER_BYTES", "100"),
        ("OPSCORE_HEADER_TIMEOUT_SECONDS", "0"),
        ("OPSCORE_MAX_CONNECTIONS", "0"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in caught.value.message


def test_forwarded_allow_ips_takes_addresses_networks_or_star() -> None:
    assert load_settings(forwarded_allow_ips="10.0.0.1, 192.168.0.0/16,::1").forwarded_allow_ips
    assert load_settings(forwarded_allow_ips="*").forwarded_allow_ips == "*"
    assert load_settings().forwarded_allow_ips == ""
