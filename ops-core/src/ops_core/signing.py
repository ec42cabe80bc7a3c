"""Standard Webhooks signatures: the one place ops-core signs a request or checks one.

The rule is the `standardwebhooks` package's, so any receiver using the
spec's libraries can check what ops-core sends and the other way round:

* headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
  ``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"));
* the secret is ``whsec_`` + base64 of at least 24 random bytes;
* verification compares in constant time and refuses a timestamp more than
  five minutes from now (the package's tolerance). Within that window a
  replayed request carries a ``webhook-id`` already seen, which the caller
  refuses (``db/remote.py`` keeps the ids).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24


class BadSignature(Exception):
    """The request's signature headers are missing, malformed, wrong, or too old or too new."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str | None:
    """Why ``secret`` cannot sign (None when it can)."""
    if not secret.startswith(SECRET_PREFIX):
        return f"the secret must start with {SECRET_PREFIX!r} (Standard Webhooks format)"
    try:
        encoded = secret[len(SECRET_PREFIX) :]
        # Padding may be left out, as the package allows.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"the secret after {SECRET_PREFIX!r} must be base64"
    if len(raw) < MIN_SECRET_BYTES:
        return f"the secret must hold at least {MIN_SECRET_BYTES} random bytes, it holds {len(raw)}"
    return None


def signed_headers(secret: str, msg_id: str, body: bytes, *, now: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, plus its content type."""
    timestamp = now or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, timestamp, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> str:
    """The request's ``webhook-id`` if its signature is good; :class:`BadSignature` otherwise."""
    wanted = {name: headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    try:
        Webhook(secret).verify(body, wanted, json_parse=False)
    except (WebhookVerificationError, ValueError, binascii.Error, UnicodeDecodeError) as exc:
        # A header the package cannot parse (no comma, bad base64) is a bad signature too, never a 500.
        raise BadSignature(str(exc) or type(exc).__name__) from None
    return wanted["webhook-id"]
