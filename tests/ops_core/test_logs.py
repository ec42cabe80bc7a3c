"""Process-wide logging setup: chatty libraries are held at WARNING."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ops_core.logs import QUIET, configure_logging


@pytest.fixture
def restore_levels() -> Iterator[None]:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in QUIET)]
    levels = [logger.level for logger in loggers]
    handlers = logging.getLogger().handlers[:]
    yield
    logging.getLogger().handlers[:] = handlers
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.usefixtures("restore_levels")
def test_http_client_and_pika_loggers_stay_at_warning() -> None:
    configure_logging("INFO")
    for name in ("pika", "httpx2", "httpx"):
        assert logging.getLogger(name).level == logging.WARNING
    assert not logging.getLogger("httpx2").isEnabledFor(logging.INFO)
