"""The ASGI application for servers that import one.

``uvicorn opscore_app.asgi:app --workers 4 --http opscore_app.asgi:http_protocol``

This module is the composition root: importing it reads ``OPSCORE_*`` and
builds the app, and the uvicorn protocol that enforces the request head and
body limits (``OPSCORE_MAX_HEADER_BYTES``, ``OPSCORE_*_TIMEOUT_SECONDS``).
``opscore api`` does the same without module globals and applies the other
connection limits too.
"""

from ops_core.api.app import create_app
from ops_core.api.server import protocol_for
from ops_core.config import load_settings

settings = load_settings()
app = create_app(settings)
http_protocol = protocol_for(settings)
