"""Can this process log in to its broker and its database?

Asked before a worker or a migration starts; ``/readyz`` asks the broker half.

A server that refuses us (wrong password, unknown vhost or database) will
refuse again, so that fails at once. A server that does not answer may still
be starting (a fresh ``docker compose up``), so that is retried with backoff
until ``startup_timeout_seconds`` pass. Either way the caller gets one
:class:`~ops_core.errors.Unavailable` whose message names the setting, shows
its URL with the password masked, and says what the server said.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pika
import pika.exceptions
from sqlalchemy.engine import make_url
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ops_core.config import Settings
from ops_core.errors import BrokerUnavailable, DatabaseUnavailable

log = logging.getLogger(__name__)

# Postgres answers these while it starts up or is full: worth asking again, unlike a refused login.
_PG_TRANSIENT = (asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


class _NoAnswer(Exception):
    """Nothing (or nothing in time) answered at the address: worth retrying during start-up."""


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def broker_login(url: str, timeout: float) -> None:
    """Open and close one AMQP connection with the URL's credentials and vhost (blocking, at most ~``timeout``)."""
    try:
        _broker_login(url, timeout)
    except _NoAnswer as exc:
        raise _broker_error(url, str(exc)) from None


def wait_for_broker(settings: Settings) -> None:
    """Log in to the broker, retrying while it does not answer; raise :class:`BrokerUnavailable`."""
    if settings.is_memory_broker:
        return
    url = settings.broker_url
    try:
        for attempt in _startup_retries(settings):
            with attempt:
                _broker_login(url, settings.db_timeout_seconds)
    except _NoAnswer as exc:
        raise _broker_error(url, f"{exc} (still no answer after {settings.startup_timeout_seconds:g}s)") from None


def wait_for_database(settings: Settings) -> None:
    """Log in to the database, retrying while it does not answer; raise :class:`DatabaseUnavailable`."""
    if settings.is_sqlite:
        return
    url = settings.database_url
    try:
        for attempt in _startup_retries(settings):
            with attempt:
                asyncio.run(_database_login(url, settings.db_timeout_seconds))
    except _NoAnswer as exc:
        raise _database_error(url, f"{exc} (still no answer after {settings.startup_timeout_seconds:g}s)") from None


def _startup_retries(settings: Settings) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(_NoAnswer),
        stop=stop_after_delay(settings.startup_timeout_seconds),
        wait=wait_exponential(multiplier=0.5, max=5.0),
        reraise=True,
        before_sleep=lambda state: log.info("start-up: %s; retrying", state.outcome and state.outcome.exception()),
    )


def _broker_login(url: str, timeout: float) -> None:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = timeout
    params.stack_timeout = timeout
    params.blocked_connection_timeout = timeout
    try:
        connection = pika.BlockingConnection(params)
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError) as exc:
        raise _broker_error(url, _pika_reason(exc)) from None
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise _NoAnswer(_pika_reason(exc)) from None
    connection.close()


async def _database_login(url: str, seconds: float) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = await asyncpg.connect(dsn, timeout=seconds)
    except _PG_TRANSIENT as exc:
        raise _NoAnswer(str(exc)) from None
    except asyncpg.PostgresError as exc:
        raise _database_error(url, str(exc)) from None
    except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
        raise _NoAnswer(str(exc) or type(exc).__name__) from None
    await connection.close(timeout=seconds)


def _pika_reason(exc: BaseException) -> str:
    # pika's AMQPConnectionError keeps the broker's reply (or the socket error) as its first argument.
    detail = exc.args[0] if exc.args else exc
    return str(detail) or repr(detail)


def _broker_error(url: str, reason: str) -> BrokerUnavailable:
    return BrokerUnavailable(f"cannot log in to the broker at OPSCORE_BROKER_URL={mask_url(url)}: {reason}")


def _database_error(url: str, reason: str) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"cannot connect to the database at OPSCORE_DATABASE_URL={mask_url(url)}: {reason}")
