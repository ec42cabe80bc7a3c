"""Settings: every one documented in the README, and a bad value fails at startup naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkit.models import RateLimit
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
        ("OPSCORE_ALLOWED_MODELS", " , "),
        ("OPSCORE_DEFAULT_TIMEOUT_SECONDS", str(2**31)),
        ("OPSCORE_RATE_LIMITS", "openai rpm=lots"),
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


@pytest.mark.parametrize(
    ("settings", "model", "allowed"),
    [
        # Unset: every model, but the offline one only where the default is offline (dev, tests).
        ({}, "offline:other", True),
        ({}, "openai:gpt-4o", True),
        ({"default_model": "openai:gpt-4o"}, "offline:default", False),
        ({"default_model": "openai:gpt-4o"}, " Offline:x", False),
        ({"default_model": "openai:gpt-4o"}, "anthropic:claude-x", True),
        # Set: exactly the patterns, matched against the canonical provider:name.
        ({"default_model": "openai:gpt-4o", "allowed_models": "openai:gpt-4o*,anthropic:*"}, "openai:gpt-4o", True),
        (
            {"default_model": "openai:gpt-4o", "allowed_models": "openai:gpt-4o*,anthropic:*"},
            "OPENAI: gpt-4o-mini",
            True,
        ),
        ({"default_model": "openai:gpt-4o", "allowed_models": "openai:gpt-4o*,anthropic:*"}, "openai:o1", False),
        ({"default_model": "openai:gpt-4o", "allowed_models": "openai:gpt-4o*,anthropic:*"}, "offline:x", False),
        ({"default_model": "offline:default", "allowed_models": "offline:*"}, "offline:x", True),
    ],
)
def test_allowed_models(settings: dict[str, str], model: str, allowed: bool) -> None:
    assert load_settings(**settings).allows_model(model) is allowed


@pytest.mark.parametrize(
    "settings",
    [{"default_model": "openai:o1", "allowed_models": "anthropic:*"}, {"allowed_models": "openai:*"}],
)
def test_a_default_model_that_is_not_allowed_fails_at_startup(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**settings)
    assert "OPSCORE_DEFAULT_MODEL" in caught.value.message
    assert "OPSCORE_ALLOWED_MODELS" in caught.value.message


def test_rate_limits_are_parsed_once_valid() -> None:
    settings = load_settings(rate_limits="openai:gpt-4o-mini rpm=500 tpm=200000; anthropic rpm=50 burst=2")
    assert settings.provider_rate_limits == {
        "openai:gpt-4o-mini": RateLimit(rpm=500, tpm=200000),
        "anthropic": RateLimit(rpm=50, burst=2),
    }
    assert load_settings(rate_limits=None).provider_rate_limits == {}
