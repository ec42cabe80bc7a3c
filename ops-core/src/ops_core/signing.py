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
