"""Scratch PostgreSQL databases and RabbitMQ queues on the shared servers, always removed afterwards.

The servers are shared with other work, so every run creates uniquely named
objects and deletes exactly those, never anything it did not create.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pika
from pika.exceptions import ChannelClosedByBroker
from sqlalchemy.engine import make_url
from tests.support import services as test_services

PG_ADMIN_URL = test_services.postgres_admin_url()
AMQP_URL = test_services.amqp_url()


def dsn(url: str) -> str:
    """A libpq-style URL (for asyncpg and psycopg) from a SQLAlchemy one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh, empty database (SQLAlchemy asyncpg URL), dropped on exit."""
    url = test_services.create_database(PG_ADMIN_URL)
    try:
        yield url
    finally:
        test_services.drop_database(PG_ADMIN_URL, url)


def new_queue_name(prefix: str) -> str:
    return f"bench.{prefix}.{uuid.uuid4().hex[:10]}"


def delete_queues(name: str) -> None:
    """Delete ``name`` and Dramatiq's delay (.DQ) and dead-letter (.XQ) companions, whichever exist."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        for queue in (name, f"{name}.DQ", f"{name}.XQ"):
            # A failed delete closes the channel, so each one gets its own.
            channel = connection.channel()
            with contextlib.suppress(ChannelClosedByBroker):
                channel.queue_delete(queue=queue)
                channel.close()
    finally:
        connection.close()


def delete_exchange(name: str) -> None:
    """Celery declares a direct exchange named after its default queue."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        with contextlib.suppress(ChannelClosedByBroker):
            channel.exchange_delete(exchange=name)
            channel.close()
    finally:
        connection.close()


@contextlib.contextmanager
def scratch_queue(prefix: str) -> Iterator[str]:
    """A unique queue name; the queue, its companions and a same-named exchange are deleted on exit."""
    name = new_queue_name(prefix)
    try:
        yield name
    finally:
        delete_queues(name)
        delete_exchange(name)


def rabbitmq_version() -> str:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        # pika exposes the server's handshake properties only on the underlying connection.
        properties = getattr(getattr(connection, "_impl", None), "server_properties", None) or {}
        version = properties.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        connection.close()
