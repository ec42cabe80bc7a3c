"""``opscore dev``: the API and a worker in one process, by default on SQLite and an in-process broker.

It builds exactly what production builds (the same store, actor, runner and
agent code); only the database URL and the broker differ. It is one process,
unsupervised: nothing restarts it if a run kills it.
"""

from __future__ import annotations

import ipaddress
import logging

from ops_core import tracing
from ops_core.config import Settings
from ops_core.db import migrate
from ops_core.live import LocalBus
from ops_core.logs import configure_logging
from ops_core.queue.broker import setup_broker
from ops_core.worker.process import WorkerProcess

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)

DEV_THREADS = 4


def run_dev(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    from ops_core.api.app import create_app
    from ops_core.api.server import serve

    configure_logging(settings.log_level)
    settings = dev_settings(settings, host or settings.host)
    migrate.upgrade(settings)
    tracing.configure("opscore")
    broker = setup_broker(settings)
    live = LocalBus()  # the API and the worker share this process, so live text is handed over in memory
    worker = WorkerProcess(
        settings,
        threads=DEV_THREADS,
        concurrency=settings.worker_concurrency,
        broker=broker,
        live=live,
        supervised=False,
    )
    worker.start()
    try:
        app = create_app(settings, broker=broker, live=live)
        serve(app, settings, host=host, port=port)
    finally:
        worker.stop()


def dev_settings(settings: Settings, host: str) -> Settings:
    """On a loopback address, with OPSCORE_AUTH unset, no keys: only this machine can reach the API.

    Anywhere else, or with OPSCORE_AUTH set, auth is as the setting says.
    """
    if "auth" in settings.model_fields_set or not is_loopback(host):
        return settings
    log.warning(
        "opscore dev: auth is off because the API listens on loopback (%s) only; any local process can use it."
        " Set OPSCORE_AUTH=required to require API keys.",
        host,
    )
    return settings.model_copy(update={"auth": "disabled"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
