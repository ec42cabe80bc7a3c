"""``opscore dev``: the API and a worker in one process, by default on SQLite and an in-process broker.

It builds exactly what production builds (the same store, actor, runner and
agent code); only the database URL and the broker differ. It is one process,
unsupervised: nothing restarts it if a run kills it.
"""

from __future__ import annotations

import logging

from ops_core.config import Settings
from ops_core.db import migrate
from ops_core.logs import configure_logging
from ops_core.queue.broker import setup_broker
from ops_core.worker.process import WorkerProcess

log = logging.getLogger(__name__)

DEV_THREADS = 4


def run_dev(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    from ops_core.api.app import create_app
    from ops_core.api.server import serve

    configure_logging(settings.log_level)
    migrate.upgrade(settings)
    broker = setup_broker(settings)
    worker = WorkerProcess(
        settings, threads=DEV_THREADS, concurrency=settings.worker_concurrency, broker=broker, supervised=False
    )
    worker.start()
    try:
        app = create_app(settings, broker=broker)
        serve(app, settings, host=host, port=port)
    finally:
        worker.stop()
