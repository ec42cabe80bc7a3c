"""Where the service tests find PostgreSQL and RabbitMQ, and what happens when they are missing.

Resolution, per service: the URL in the environment (``OPSCORE_TEST_POSTGRES_URL``
/ ``OPSCORE_TEST_AMQP_URL``); else, when a Docker engine answers, containers
from the root docker-compose.yml started with pytest-docker; else the local
default. An unreachable service skips the test locally but fails it in CI
(env ``CI`` set), so CI can never go green by skipping everything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

POSTGRES_ENV = "OPSCORE_TEST_POSTGRES_URL"
AMQP_ENV = "OPSCORE_TEST_AMQP_URL"
DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def postgres_admin_url() -> str:
    return os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES


def amqp_url() -> str:
    return os.environ.get(AMQP_ENV) or DEFAULT_AMQP


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the URL's host and port."""
    split = urlsplit(url)
    default_port = 5432 if split.scheme.startswith("postgres") else 5672
    try:
        with socket.create_connection((split.hostname or "127.0.0.1", split.port or default_port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable(name: str, url: str) -> None:
    """Skip locally, fail in CI."""
    split = urlsplit(url)
    message = f"{name} is not reachable at {split.hostname}:{split.port}"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so missing services fail instead of skipping)")
    pytest.skip(message)


def require(name: str, url: str) -> str:
    if not reachable(url):
        unavailable(name, url)
    return url


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class ServiceUrls:
    postgres: str
    amqp: str


@contextmanager
def discover() -> Iterator[ServiceUrls]:
    """The URLs to test against; starts compose containers when that is how they are found."""
    explicit = os.environ.get(POSTGRES_ENV) or os.environ.get(AMQP_ENV)
    if explicit or not COMPOSE_FILE.exists() or not docker_available():
        yield ServiceUrls(postgres_admin_url(), amqp_url())
        return
    from pytest_docker.plugin import get_docker_ip, get_docker_services

    with get_docker_services(
        "docker compose",
        str(COMPOSE_FILE),
        f"opscore-test-{os.getpid()}",
        ["up --wait postgres rabbitmq"],  # only the backing services; the app images are not needed
        ["down -v"],
    ) as services:
        ip = get_docker_ip()
        yield ServiceUrls(
            postgres=f"postgresql+asyncpg://opscore:opscore@{ip}:{services.port_for('postgres', 5432)}/opscore",
            amqp=f"amqp://opscore:opscore@{ip}:{services.port_for('rabbitmq', 5672)}/%2F",
        )


def _dsn(url: str | URL) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(_dsn(admin_url), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run_admin(admin_url: str, sql: str) -> None:
    # A fresh thread: fixtures may be set up from inside a running event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _admin(admin_url, sql)).result()


def create_database(admin_url: str) -> str:
    """Create an empty database with a unique name; returns its asyncpg URL."""
    name = f"opscore_test_{uuid.uuid4().hex[:16]}"
    _run_admin(admin_url, f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    if not name or not name.startswith("opscore_test_"):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    _run_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
