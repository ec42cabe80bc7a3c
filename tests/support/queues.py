"""Remove the RabbitMQ queues a test run declared, so runs leave the shared broker as they found it."""

from __future__ import annotations

import pika
import pika.exceptions


def dramatiq_queue_names(queue_name: str) -> list[str]:
    """A Dramatiq queue and its delay and dead-letter companions."""
    return [queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ", f"{queue_name}.DQ.XQ"]


def delete_queues(amqp_url: str, names: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        for name in names:
            channel = connection.channel()
            try:
                channel.queue_delete(queue=name)
            except pika.exceptions.ChannelClosedByBroker:
                continue  # never declared
            channel.close()
    finally:
        connection.close()
