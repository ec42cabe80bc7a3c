"""Process-wide logging for the server commands (called by entry points, never at import)."""

from __future__ import annotations

import logging

from ops_core.redact import RedactingFilter

FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"

# These log routine work at INFO; only their warnings are worth a line. pika logs every
# connection step. httpx2 (the HTTP client under the OpenAI and Anthropic SDKs, and
# google-genai's when installed) and httpx (google-genai's otherwise) log "HTTP Request: ..."
# for every model request, which costs CPU and floods the log on a busy worker.
QUIET = ("pika", "httpx2", "httpx")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    # On the handlers, so that every logger's records (uvicorn's, the SDKs') pass through it.
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
