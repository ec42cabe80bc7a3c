"""Process-wide logging for the server commands (called by entry points, never at import)."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"

# pika logs every connection step at INFO; only its warnings are worth a line.
QUIET = ("pika",)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
