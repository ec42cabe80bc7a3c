"""All of ops-core's settings, read from ``OPSCORE_*`` environment variables.

A bad value fails at startup: pydantic names the setting in its error, and
:func:`load_settings` turns that into one readable message.
"""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops_core.errors import ConfigError

if TYPE_CHECKING:
    from agentkit.models import RateLimit

DATABASE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
BROKER_SCHEMES = ("amqp://", "amqps://", "memory://")

Seconds = Annotated[float, Field(gt=0)]

# Bounds of a task's time limits: they fit PostgreSQL's INTEGER columns and any
# timestamp arithmetic done with them (now + limit) stays inside the calendar.
MAX_TIMEOUT_SECONDS = 7 * 86_400
MAX_APPROVAL_TIMEOUT_SECONDS = 365 * 86_400
MAX_SCHEDULE_TO_START_SECONDS = 30 * 86_400
# Unless OPSCORE_ALLOWED_MODELS says otherwise, the offline model (canned answers, no provider)
# serves only deployments whose own default is offline: dev mode, the embedded default, tests.
OFFLINE_MODELS = "offline:*"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSCORE_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="sqlite+aiosqlite:///./opscore.db",
        description="postgresql+asyncpg://… in production; sqlite+aiosqlite://… for the embedded default.",
    )
    broker_url: str = Field(
        default="memory://",
        description="amqp://… for RabbitMQ; memory:// for the in-process broker of the embedded default.",
    )
    queue_name: str = Field(default="opscore.tasks", pattern=r"^[A-Za-z0-9_.\-]{1,200}$")
    default_model: str = Field(default="offline:default", description="agentkit model string for tasks without one.")
    allowed_models: str | None = Field(
        default=None,
        description="Comma-separated fnmatch patterns of the models tasks may use, e.g. 'openai:gpt-4o*,anthropic:*'; "
        "unset: any model except offline:*, which only a server whose default model is offline allows.",
    )
    agents: str | None = Field(default=None, description="Module path of the user's agent definitions.")
    rate_limits: str | None = Field(
        default=None,
        description="Provider rate limits every worker shares, e.g. 'openai:gpt-4o-mini rpm=500 tpm=200000;"
        " anthropic rpm=50' (or the same as JSON); unset: none.",
    )
    mcp_env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='JSON object {"NAME": "value"}: what ${NAME} in an agent\'s MCP server config reads before the '
        "process environment (credentials for MCP servers; never from task input).",
    )
    api_url: str = Field(default="http://127.0.0.1:8000", description="Where the client commands find the API.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    grpc_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve the gRPC TaskService on this port too; unset: no gRPC."
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_body_drain_bytes: int = Field(
        default=16 * 1_048_576,
        ge=0,
        description="How much of an over-limit body is read and discarded so that the client can read its 413.",
    )
    max_header_bytes: int = Field(
        default=65_536, ge=1024, le=16 * 1_048_576, description="Largest request line plus headers; larger gets 431."
    )
    header_timeout_seconds: Seconds = Field(
        default=10.0, description="A client must send its request line and headers within this; else 408 and close."
    )
    body_timeout_seconds: Seconds = Field(
        default=30.0, description="A client must send the whole body within this after its headers; else 408 and close."
    )
    keep_alive_seconds: int = Field(default=5, ge=1, le=3600, description="An idle keep-alive connection is closed.")
    max_connections: int = Field(
        default=1000, ge=1, le=1_000_000, description="Open connections per API process; a request beyond gets 503."
    )
    backlog: int = Field(default=2048, ge=1, le=65_535, description="Listen backlog of the API socket.")
    forwarded_allow_ips: str = Field(
        default="",
        description="Comma-separated proxy IPs/CIDRs (or *) whose X-Forwarded-For/-Proto are trusted; empty: none.",
    )
    worker_concurrency: int = Field(default=100, ge=1, le=100_000, description="Runs one worker process holds at once.")
    # A dispatch thread holds one message while its claim is in flight (worker/runner.py), so the threads
    # bound how many claims share a batch; they run no agent code (measurements: docs/benchmarks.md, Findings).
    worker_threads: int = Field(default=32, ge=1, le=1024, description="Dramatiq dispatch threads per worker process.")
    heartbeat_seconds: Seconds = 5.0
    lease_seconds: Seconds = 30.0
    default_max_retries: int = Field(default=3, ge=0, le=100)
    default_timeout_seconds: int = Field(default=3600, ge=1, le=MAX_TIMEOUT_SECONDS)
    retry_backoff_seconds: Seconds = 2.0
    retry_backoff_max_seconds: Seconds = 300.0
    max_manual_retries: int = Field(
        default=10, ge=0, le=1000, description="How many times one task may be sent back to pending by hand."
    )
    approval_timeout_seconds: Seconds = Field(
        default=86_400.0,
        le=MAX_APPROVAL_TIMEOUT_SECONDS,
        description="How long a tool call waits for a person before it is denied as timed out,"
        " unless its agent's policy sets approval_timeout.",
    )
    session_memory_tokens: int = Field(
        default=16_000,
        ge=100,
        le=10_000_000,
        description="The memory budget of a session's task whose agent sets no ConversationWindow: the oldest"
        " turns are dropped to keep each model request within this many (estimated) tokens.",
    )
    stream_poll_seconds: Seconds = Field(
        default=0.25, le=10, description="How often an API process looks for new events of the tasks it streams."
    )
    stream_max_subscribers: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Streams one API process serves at once; beyond it a stream gets 503.",
    )
    stream_keepalive_seconds: Seconds = Field(
        default=15.0, le=300, description="A stream with nothing to say sends an SSE comment this often."
    )
    stream_send_timeout_seconds: Seconds = Field(
        default=30.0, le=3600, description="A stream whose client reads nothing for this long is closed."
    )
    shutdown_grace_seconds: Seconds = 30.0
    relay_interval_seconds: Seconds = Field(
        default=2.0,
        description="How often each worker publishes what is due: unsent tasks, retries after their backoff,"
        " delayed tasks at their run_at.",
    )
    schedule_interval_seconds: Seconds = Field(
        default=1.0, le=60, description="How often each worker fires the cron schedules that are due."
    )
    schedule_misfire_grace_seconds: Seconds = Field(
        default=60.0,
        le=86_400,
        description="A schedule's tick seen this late still fires; older ones were missed (downtime) and follow"
        " the schedule's catch_up policy.",
    )
    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated host names or IP addresses a callback_url may reach although they are"
        " loopback, private or link-local (e.g. '127.0.0.1,localhost'); empty: only public addresses.",
    )
    webhook_retry_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 30,
        description="How long a failing webhook delivery is retried before it is given up.",
    )
    webhook_backoff_seconds: Seconds = Field(
        default=10.0, le=86_400, description="Wait before a webhook delivery's first retry; doubles each retry."
    )
    webhook_backoff_max_seconds: Seconds = Field(
        default=3600.0, le=86_400, description="Longest wait between two retries of a webhook delivery."
    )
    webhook_timeout_seconds: Seconds = Field(
        default=10.0, le=300, description="A receiver must answer a webhook POST within this; else the attempt failed."
    )
    webhook_poll_seconds: Seconds = Field(
        default=1.0, le=3600, description="How often each worker process looks for webhooks to send."
    )
    remote_callback_url: str | None = Field(
        default=None,
        description="The API's base URL as remote agents reach it, for their signed callbacks; unset: OPSCORE_API_URL.",
    )
    remote_lease_seconds: Seconds = Field(
        default=300.0,
        description="A remote agent that sends no callback for this long has lost its attempt: it is retried.",
    )
    remote_delivery_timeout_seconds: Seconds = Field(
        default=10.0, le=300, description="How long one webhook to a remote agent (task or cancel) may take."
    )
    republish_after_seconds: Seconds = Field(
        default=300.0, description="A pending task published this long ago and never claimed is published again."
    )
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_timeout_seconds: Seconds = 5.0
    startup_timeout_seconds: Seconds = Field(
        default=30.0,
        description="How long start-up waits for an unreachable database or broker before exiting non-zero.",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    auth: Literal["required", "disabled"] = Field(
        default="required",
        description="required: every /v1 request needs a key. disabled: none does (logged as a warning at start);"
        " opscore dev on a loopback address disables it unless this is set.",
    )
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long an API process trusts a key it looked up: a revoked key stops working within this.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="The key the CLI and the Python client send (Authorization: Bearer)."
    )
    cors_origins: str = Field(
        default="", description="Comma-separated origins allowed to call the API from a browser; empty: CORS off."
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Where opscore worker serves the Prometheus metrics of all its processes; unset: no metrics.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="The address the worker pool's metrics endpoint listens on."
    )

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if not value.startswith(DATABASE_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(DATABASE_SCHEMES)}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if not value.startswith(BROKER_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(BROKER_SCHEMES)}")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        for item in comma_list(value):
            if item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address, a CIDR network or *") from None
        return value

    @field_validator("remote_callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be the API's base URL as remote agents reach it, http:// or https://")
        return value

    @field_validator("default_model")
    @classmethod
    def _model_string(cls, value: str) -> str:
        # Imported here so that reading settings never pulls in provider SDKs.
        from agentkit.errors import UnknownProviderError
        from agentkit.models import parse_model_string

        try:
            parse_model_string(value)
        except UnknownProviderError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("allowed_models")
    @classmethod
    def _model_patterns(cls, value: str | None) -> str | None:
        if value is not None and not comma_list(value):
            raise ValueError("names no pattern; leave it unset to allow every model")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, value: str | None) -> str | None:
        from agentkit.models import parse_rate_limits

        if value is not None:
            parse_rate_limits(value)  # raises ValueError saying what is wrong
        return value

    @property
    def provider_rate_limits(self) -> dict[str, RateLimit]:
        """``rate_limits`` parsed: per provider or ``provider:model``; empty when unset."""
        from agentkit.models import parse_rate_limits

        return {} if self.rate_limits is None else parse_rate_limits(self.rate_limits)

    @model_validator(mode="after")
    def _default_model_allowed(self) -> Settings:
        if not self.allows_model(self.default_model):
            raise ValueError(
                f"OPSCORE_DEFAULT_MODEL {self.default_model!r} is not allowed by OPSCORE_ALLOWED_MODELS"
                f" ({self.allowed_models or 'unset: ' + OFFLINE_MODELS + ' needs an offline default'})"
            )
        return self

    def allows_model(self, model: str) -> bool:
        """Whether tasks may run on ``model`` (a valid agentkit model string), per ``allowed_models``."""
        from agentkit.models import parse_model_string

        if self.allowed_models is not None:
            return matches_any(model, self.allowed_models)
        provider, _ = parse_model_string(model)
        if matches_any(model, OFFLINE_MODELS):
            return parse_model_string(self.default_model)[0] == provider
        return True

    @property
    def request_deadline_seconds(self) -> float:
        """How long one API request may take before it is a 503: a few database round trips plus a
        publish are each bounded on their own; this caps their sum so a client never hangs."""
        return self.db_timeout_seconds * 3

    @property
    def auth_required(self) -> bool:
        return self.auth == "required"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_memory_broker(self) -> bool:
        return self.broker_url.startswith("memory://")


def matches_any(model: str, patterns: str) -> bool:
    """Whether ``model`` (a valid agentkit model string) matches one of comma-separated fnmatch ``patterns``."""
    from agentkit.models import parse_model_string

    # Matched in canonical form, so ' OpenAI:x' cannot slip past a pattern written 'openai:*'.
    provider, name = parse_model_string(model)
    canonical = f"{provider}:{name}"
    return any(fnmatchcase(canonical, pattern) for pattern in comma_list(patterns))


def comma_list(value: str) -> list[str]:
    """The non-empty items of a comma-separated setting, stripped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, raising :class:`ConfigError` that names each bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"OPSCORE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
