"""The ASGI application for servers that import one: ``uvicorn opscore_app.asgi:app --workers 4``.

This module is the composition root: importing it reads ``OPSCORE_*`` and
builds the app. ``opscore api`` does the same without a module global.
"""

from ops_core.api.app import create_app
from ops_core.config import load_settings

app = create_app(load_settings())
