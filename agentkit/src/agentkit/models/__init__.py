"""LLM clients and the interface they share.

A model is named by a ``provider:model`` string (``openai:gpt-4o-mini``,
``anthropic:claude-sonnet-4-5``, ``openrouter:meta-llama/llama-3.3-70b-instruct``).
:func:`parse_model_string` validates one without touching the environment;
:func:`infer_model` builds the client. Provider modules, and the SDKs behind
them, are imported only when a model of that provider is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentkit.errors import UnknownProviderError
from agentkit.models.base import DeltaCallback, Model, ModelRequest, ModelResponse, ModelSettings, ToolDefinition
from agentkit.models.gcra import RateLimit
from agentkit.models.ratelimit import InMemoryRateLimiter, RateLimiter, parse_rate_limits

__all__ = [
    "KNOWN_PROVIDERS",
    "PROVIDER_ALIASES",
    "DeltaCallback",
    "InMemoryRateLimiter",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "RateLimit",
    "RateLimiter",
    "ToolDefinition",
    "configured_providers",
    "import_sdk",
    "infer_model",
    "parse_model_string",
    "parse_rate_limits",
]

_OPENAI_COMPATIBLE = ("openai", "openrouter", "vllm", "ollama", "lmstudio")

KNOWN_PROVIDERS: tuple[str, ...] = (*_OPENAI_COMPATIBLE, "anthropic", "google", "offline")
"""Canonical provider names accepted before the first colon of a model string."""

PROVIDER_ALIASES: dict[str, str] = {"gemini": "google"}


def parse_model_string(model: str) -> tuple[str, str]:
    """Split ``provider:model`` on the first colon and validate the provider.

    Returns the canonical provider (aliases resolved) and the model name. Reads
    no environment variables and builds no client, so a host can reject a bad
    model string when a task is submitted.
    """
    provider, sep, name = model.strip().partition(":")
    provider = provider.strip().lower()
    if not sep:
        raise UnknownProviderError(
            f"model string {model!r} has no provider prefix; expected 'provider:model' "
            f"with provider one of {', '.join(KNOWN_PROVIDERS)}"
        )
    provider = PROVIDER_ALIASES.get(provider, provider)
    if provider not in KNOWN_PROVIDERS:
        raise UnknownProviderError(
            f"unknown provider {provider!r} in model string {model!r}; "
            f"known providers: {', '.join(KNOWN_PROVIDERS)} (alias: gemini -> google)"
        )
    name = name.strip()
    # The offline model needs no name; every real provider does.
    if not name and provider != "offline":
        raise UnknownProviderError(f"model string {model!r} names no model after {provider!r}:")
    return provider, name


# The module each provider's client imports when its first model is built.
_SDK_MODULES = {**dict.fromkeys(_OPENAI_COMPATIBLE, "openai"), "anthropic": "anthropic", "google": "google.genai"}


def import_sdk(provider: str) -> bool:
    """Import the SDK behind ``provider`` now; whether it is installed (the offline model needs none).

    Importing a provider's SDK takes a second or more. A host with a busy event
    loop calls this at start-up, so that building the first model later is quick.
    """
    module = _SDK_MODULES.get(PROVIDER_ALIASES.get(provider, provider))
    if module is None:
        return provider == "offline"
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def configured_providers() -> list[str]:
    """The providers whose credentials are set in the environment (a base URL, for local servers).

    These are the providers a host can expect to call; reading the environment
    here, not at import time, keeps ``import agentkit`` free of side effects.
    """
    from agentkit.models._env import resolve_optional
    from agentkit.models.anthropic import KEY_ENV as ANTHROPIC_KEY_ENV
    from agentkit.models.google import KEY_ENV as GOOGLE_KEY_ENV
    from agentkit.models.openai import OPENAI_COMPATIBLE

    found = [
        name
        for name, spec in OPENAI_COMPATIBLE.items()
        if resolve_optional(None, spec.key_env if spec.key_required else spec.base_url_env)
    ]
    if resolve_optional(None, *ANTHROPIC_KEY_ENV):
        found.append("anthropic")
    if resolve_optional(None, *GOOGLE_KEY_ENV):
        found.append("google")
    return found


def infer_model(model: str | Model | None = None, **kwargs: Any) -> Model:
    """Build the model a string names; a :class:`Model` is returned as is.

    ``None`` gives the offline test model. ``kwargs`` (``api_key=``,
    ``base_url=``, ``retry=``, ``rate_limiter=`` ...) go to the provider's constructor and win over
    environment variables. A missing key raises
    :class:`~agentkit.errors.MissingCredentialsError` here, never a fallback to
    another provider.
    """
    if isinstance(model, Model):
        return model
    if model is None:
        model = "offline:"
    provider, name = parse_model_string(model)
    if provider in _OPENAI_COMPATIBLE:
        from agentkit.models.openai import OpenAIModel

        return OpenAIModel(name, provider=provider, **kwargs)
    if provider == "anthropic":
        from agentkit.models.anthropic import AnthropicModel

        return AnthropicModel(name, **kwargs)
    if provider == "google":
        from agentkit.models.google import GoogleModel

        return GoogleModel(name, **kwargs)
    from agentkit.testing import OfflineModel

    return OfflineModel(name or "default", **kwargs)
