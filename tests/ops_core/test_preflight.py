"""Start-up preflight: a wrong or unreachable database or broker stops the command with one clear line."""

from __future__ import annotations

import os
import subprocess
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.engine import make_url

from ops_core.preflight import mask_url
from tests.support import services
from tests.support.processes import OPSCORE, REPO_ROOT

# Far above what a refused login takes, far below what an endless retry loop would.
DEADLINE = 60.0
SECRET = "s3cret-pw"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@rabbit:5672/%2F", "amqp://guest:***@rabbit:5672/%2F"),
        ("postgresql+asyncpg://u:p%40ss@db/x", "postgresql+asyncpg://u:***@db/x"),
        ("postgresql+asyncpg://u@db/x", "postgresql+asyncpg://u@db/x"),
        ("memory://", "memory://"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def run_cli(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [OPSCORE, *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    return result, time.monotonic() - started


def assert_one_clear_line(result: subprocess.CompletedProcess[str], setting: str, *said: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and setting in lines[0], lines[0]
    for words in said:
        assert words in lines[0], lines[0]
    assert SECRET not in result.stderr


def postgres_url(**parts: str) -> str:
    admin = services.require("PostgreSQL", services.postgres_admin_url())
    return make_url(admin).set(drivername="postgresql+asyncpg", **parts).render_as_string(hide_password=False)


def amqp(user: str | None = None, password: str | None = None, vhost: str | None = None) -> str:
    split = urlsplit(services.require("RabbitMQ", services.amqp_url()))
    host = split.netloc.rpartition("@")[2]
    netloc = f"{user or split.username}:{password or split.password}@{host}"
    return urlunsplit(split._replace(netloc=netloc, path=f"/{vhost}" if vhost else split.path))


@pytest.mark.integration
def test_db_upgrade_with_a_missing_database_says_so_in_one_line() -> None:
    result, _ = run_cli("db", "upgrade", OPSCORE_DATABASE_URL=postgres_url(database="opscore_no_such_db"))

    assert_one_clear_line(result, "OPSCORE_DATABASE_URL", 'database "opscore_no_such_db" does not exist')


@pytest.mark.integration
def test_db_upgrade_with_a_wrong_login_says_so_in_one_line_with_the_password_masked() -> None:
    url = postgres_url(username="opscore_no_such_role", password=SECRET)

    result, _ = run_cli("db", "upgrade", OPSCORE_DATABASE_URL=url)

    assert_one_clear_line(result, "OPSCORE_DATABASE_URL", "opscore_no_such_role", "***")


@pytest.mark.integration
def test_db_upgrade_gives_up_on_an_unreachable_server_after_the_startup_timeout() -> None:
    url = f"postgresql+asyncpg://postgres:{SECRET}@127.0.0.1:1/opscore"

    result, elapsed = run_cli("db", "upgrade", OPSCORE_DATABASE_URL=url, OPSCORE_STARTUP_TIMEOUT_SECONDS="1")

    assert_one_clear_line(result, "OPSCORE_DATABASE_URL", "127.0.0.1:1", "still no answer after 1s")
    assert elapsed < DEADLINE


@pytest.mark.integration
@pytest.mark.parametrize(
    ("broker", "said"),
    [
        ({"password": SECRET}, "ACCESS_REFUSED"),
        ({"vhost": "opscore-no-such-vhost"}, "vhost opscore-no-such-vhost not found"),
    ],
    ids=["wrong-password", "wrong-vhost"],
)
def test_worker_with_a_wrong_broker_login_exits_with_one_line(broker: dict[str, str], said: str) -> None:
    result, _ = run_cli(
        "worker",
        OPSCORE_BROKER_URL=amqp(**broker),
        OPSCORE_DATABASE_URL=postgres_url(),
        OPSCORE_LOG_LEVEL="INFO",
    )

    assert_one_clear_line(result, "OPSCORE_BROKER_URL", said)
