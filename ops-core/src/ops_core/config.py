"""All of ops-core's settings, read from ``OPSCORE_*`` environment variables.

A bad value fails at startup: pydantic names the setting in its error, and
:func:`load_settings` turns that into one readable message.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops_core.errors import ConfigError

DATABASE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
BROKER_SCHEMES = ("amqp://", "amqps://", "memory://")

Seconds = Annotated[float, Field(gt=0)]


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
    agents: str | None = Field(default=None, description="Module path of the user's agent definitions.")
    api_url: str = Field(default="http://127.0.0.1:8000", description="Where the client commands find the API.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    worker_concurrency: int = Field(default=100, ge=1, le=100_000, description="Runs one worker process holds at once.")
    # A dispatch thread holds one message while its claim is in flight (worker/runner.py), so the threads bound
    # how many claims share a batch; they run no agent code. Drains of 10,000 tasks, 1 process: 8 threads
    # 1,631 tasks/s, 16 1,923, 32 2,031 (bench/findings.md).
    worker_threads: int = Field(default=32, ge=1, le=1024, description="Dramatiq dispatch threads per worker process.")
    heartbeat_seconds: Seconds = 5.0
    lease_seconds: Seconds = 30.0
    default_max_retries: int = Field(default=3, ge=0, le=100)
    default_timeout_seconds: int = Field(default=3600, ge=1)
    retry_backoff_seconds: Seconds = 2.0
    retry_backoff_max_seconds: Seconds = 300.0
    max_manual_retries: int = Field(
        default=10, ge=0, le=1000, description="How many times one task may be sent back to pending by hand."
    )
    shutdown_grace_seconds: Seconds = 30.0
    relay_interval_seconds: Seconds = 2.0
    republish_after_seconds: Seconds = Field(
        default=300.0, description="A pending task published this long ago and never claimed is published again."
    )
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_timeout_seconds: Seconds = 5.0
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")

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

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_memory_broker(self) -> bool:
        return self.broker_url.startswith("memory://")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, raising :class:`ConfigError` that names each bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"OPSCORE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
