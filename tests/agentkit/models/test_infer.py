"""infer_model / parse_model_string: provider parsing, credentials and the real-request guard."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentkit.errors import MissingCredentialsError, RealRequestBlockedError, UnknownProviderError
from agentkit.messages import UserMessage
from agentkit.models import KNOWN_PROVIDERS, infer_model, parse_model_string
from agentkit.models.anthropic import AnthropicModel
from agentkit.models.base import ModelRequest
from agentkit.models.google import GoogleModel
from agentkit.models.openai import OpenAIModel
from agentkit.testing import OfflineModel

_KEY_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENROUTER_API_KEY",
    "OPENROUTER_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "VLLM_BASE_URL",
    "VLLM_API_KEY",
    "OLLAMA_BASE_URL",
    "OLLAMA_API_KEY",
    "LMSTUDIO_BASE_URL",
    "LMSTUDIO_API_KEY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _KEY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("google:gemini-2.5-flash", ("google", "gemini-2.5-flash")),
        ("gemini:gemini-2.5-flash", ("google", "gemini-2.5-flash")),
        ("openrouter:meta-llama/llama-3.3-70b-instruct", ("openrouter", "meta-llama/llama-3.3-70b-instruct")),
        ("ollama:llama3.2:3b", ("ollama", "llama3.2:3b")),
        ("OpenAI:gpt-4o", ("openai", "gpt-4o")),
        ("offline:echo", ("offline", "echo")),
    ],
)
def test_parse_model_string(model: str, expected: tuple[str, str]) -> None:
    assert parse_model_string(model) == expected


@pytest.mark.parametrize("model", ["gpt-4o", "mistral:large", "openai:", ":gpt-4o"])
def test_parse_model_string_rejects_bad_strings(model: str) -> None:
    with pytest.raises(UnknownProviderError):
        parse_model_string(model)


def test_unknown_provider_lists_known_ones() -> None:
    with pytest.raises(UnknownProviderError) as caught:
        infer_model("mistral:large")
    for provider in KNOWN_PROVIDERS:
        assert provider in str(caught.value)


def test_parse_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # No key anywhere, yet parsing succeeds: it must not build a client.
    assert parse_model_string("anthropic:claude-sonnet-5") == ("anthropic", "claude-sonnet-5")


@pytest.mark.parametrize(
    ("model", "env_var"),
    [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("openrouter:meta-llama/llama-3.3-70b-instruct", "OPENROUTER_API_KEY"),
        ("anthropic:claude-sonnet-5", "ANTHROPIC_API_KEY"),
        ("google:gemini-2.5-flash", "GEMINI_API_KEY"),
    ],
)
def test_missing_key_names_the_env_var(model: str, env_var: str) -> None:
    with pytest.raises(MissingCredentialsError, match=env_var):
        infer_model(model)


def test_missing_key_never_falls_back_to_another_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-present")
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        infer_model("anthropic:claude-sonnet-5")


def test_vllm_requires_a_base_url() -> None:
    with pytest.raises(MissingCredentialsError, match="VLLM_BASE_URL"):
        infer_model("vllm:qwen")


def test_builds_each_provider_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ant")
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:8000/v1")

    openai_model = infer_model("openai:gpt-4o-mini")
    assert isinstance(openai_model, OpenAIModel)
    assert openai_model.base_url == "https://api.openai.com/v1"
    assert isinstance(infer_model("anthropic:claude-sonnet-5"), AnthropicModel)
    assert isinstance(infer_model("gemini:gemini-2.5-flash"), GoogleModel)
    assert infer_model("gemini:gemini-2.5-flash").name == "google:gemini-2.5-flash"
    vllm = infer_model("vllm:qwen")
    assert isinstance(vllm, OpenAIModel) and vllm.base_url == "http://127.0.0.1:8000/v1"
    ollama = infer_model("ollama:llama3.2")
    assert isinstance(ollama, OpenAIModel) and ollama.base_url == "http://localhost:11434/v1"
    lmstudio = infer_model("lmstudio:qwen2.5")
    assert isinstance(lmstudio, OpenAIModel) and lmstudio.base_url == "http://localhost:1234/v1"


def test_explicit_arguments_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    model = infer_model("openai:gpt-4o-mini", api_key="sk-explicit", base_url="http://127.0.0.1:2/v1")
    assert isinstance(model, OpenAIModel)
    assert model.base_url == "http://127.0.0.1:2/v1"


def test_none_and_offline_give_the_offline_model() -> None:
    assert isinstance(infer_model(None), OfflineModel)
    offline = infer_model("offline:echo")
    assert isinstance(offline, OfflineModel)
    assert offline.name == "offline:echo"


def test_a_model_instance_is_returned_unchanged() -> None:
    model = OfflineModel()
    assert infer_model(model) is model


@pytest.mark.parametrize(
    "model",
    [
        OpenAIModel("gpt-4o-mini", api_key="sk"),
        OpenAIModel("some/model", provider="openrouter", api_key="or"),
        AnthropicModel("claude-sonnet-5", api_key="ant"),
        GoogleModel("gemini-2.5-flash", api_key="g"),
        OpenAIModel("gpt-4o-mini", api_key="sk", base_url="http://10.1.2.3:8000/v1"),
    ],
    ids=["openai", "openrouter", "anthropic", "google", "non-loopback-base-url"],
)
async def test_real_requests_are_blocked_without_network(model: OpenAIModel) -> None:
    # The session fixture blocks real requests; the guard must fire before any socket is opened.
    with pytest.raises(RealRequestBlockedError):
        await model.request(ModelRequest(messages=[UserMessage(content="hi")]))


def test_importing_agentkit_loads_no_provider_sdk() -> None:
    code = (
        "import sys, agentkit, agentkit.models; "
        "loaded = [m for m in ('openai', 'anthropic', 'google.genai', 'httpx2') if m in sys.modules]; "
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_configured_providers_are_those_with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentkit.models import configured_providers

    for name in ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("VLLM_BASE_URL", "OLLAMA_BASE_URL", "LMSTUDIO_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert configured_providers() == []

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:1/v1")
    assert sorted(configured_providers()) == ["google", "openai", "vllm"]


def test_import_sdk_imports_the_providers_sdk() -> None:
    import sys

    from agentkit.models import import_sdk

    assert import_sdk("openai") and "openai" in sys.modules
    assert import_sdk("gemini") and "google.genai" in sys.modules  # an alias
    assert import_sdk("offline")
    assert not import_sdk("nonsense")
