"""Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), by the
``standardwebhooks`` package: HMAC-SHA256 over ``id.timestamp.body``, sent as ``v1,<base64>``.

Secrets are ``whsec_`` plus base64 of random bytes, the form the package (and every Standard
Webhooks verifier) takes.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_BYTES = 32


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secrets_: Sequence[str], msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three headers for ``body``, signed with each of ``secrets_`` (several while a rotation overlaps)."""
    when = timestamp.astimezone(UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id, when, body) for secret in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signatures,
    }


def verify(secret: str, body: bytes | str, headers: Mapping[str, str]) -> bool:
    """Whether ``headers`` sign ``body`` with ``secret`` within the package's timestamp tolerance."""
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except (WebhookVerificationError, ValueError):
        return False
    return True


# ---- remote agents (ops_core.worker.remote, ops_core.services.remote) ------------------------------

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24


def check_secret(secret: str) -> str | None:
    """Why ``secret``, given by a person, cannot sign (None when it can)."""
    if not secret.startswith(SECRET_PREFIX):
        return f"the secret must start with {SECRET_PREFIX!r} (Standard Webhooks format)"
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Padding may be left out, as the package allows.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        return f"the secret after {SECRET_PREFIX!r} must be base64"
    if len(raw) < MIN_SECRET_BYTES:
        return f"the secret must hold at least {MIN_SECRET_BYTES} random bytes, it holds {len(raw)}"
    return None


def signed_headers(secret: str, msg_id: str, body: bytes, *, now: datetime | None = None) -> dict[str, str]:
    """:func:`sign` for one secret and a JSON body: the three headers plus the content type."""
    headers = sign([secret], msg_id, now or datetime.now(UTC), body.decode())
    return {**headers, "content-type": "application/json"}
