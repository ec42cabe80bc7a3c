"""Importing any ops_core module is inert: no sockets, no settings read, no global broker or engine.

Only the composition root (``opscore_app.asgi``) builds process-wide objects.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import importlib, json, os, pkgutil, sys

sockets = []
sys.addaudithook(lambda event, args: sockets.append(event) if event.startswith("socket.") else None)

built = []

import pydantic_settings
import sqlalchemy.ext.asyncio


def recording(name, original):
    def wrapper(*args, **kwargs):
        built.append(name)
        return original(*args, **kwargs)
    return wrapper


# Settings are read from the environment only when a Settings object is built, and an
# engine opens connections only once it exists: watch both being built at import.
pydantic_settings.BaseSettings.__init__ = recording("settings", pydantic_settings.BaseSettings.__init__)
sqlalchemy.ext.asyncio.create_async_engine = recording("engine", sqlalchemy.ext.asyncio.create_async_engine)

import ops_core

modules = []
for info in pkgutil.walk_packages(ops_core.__path__, "ops_core."):
    # Alembic's migration scripts run only under alembic's own loader.
    if ".migrations" not in info.name:
        importlib.import_module(info.name)
        modules.append(info.name)

import dramatiq.broker

print(json.dumps({
    "modules": modules,
    "sockets": sockets,
    "built": built,
    "global_broker": dramatiq.broker.global_broker is not None,
}))
"""


def test_importing_every_ops_core_module_has_no_side_effects() -> None:
    env = {"OPSCORE_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert len(report["modules"]) > 20, report["modules"]
    assert report["sockets"] == []
    assert report["built"] == []
    assert report["global_broker"] is False


def test_a_worker_process_does_not_load_the_web_framework() -> None:
    """The services and the worker stay below the HTTP layer: a worker never imports FastAPI or Starlette."""
    probe = (
        "import sys, ops_core.worker.process, ops_core.worker.runner, ops_core.worker.execute\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
