"""API keys: their scopes, the shape of a secret, and the caller a valid key stands for.

A secret reads ``opsk_<key id>_<43 random characters>``: the prefix lets
secret scanners find a leaked key, the id finds its row without a search, and
the random part carries 256 bits. Only the SHA-256 of the whole secret is
stored; a presented secret is hashed and compared in constant time. A fast
hash is right here, unlike for passwords: the secret is random and long, so
there is nothing to guess.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ops_core.tenancy import EVERY_TENANT, TenantScope

PREFIX = "opsk_"
_SECRET = re.compile(r"^opsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class Scope(enum.StrEnum):
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    METRICS = "metrics"
    # Read and rotate the tenant's webhook signing secret (GET/POST /v1/webhooks/secret).
    WEBHOOKS = "webhooks"
    ADMIN = "admin"


DEFAULT_SCOPES: tuple[Scope, ...] = (Scope.TASKS_READ, Scope.TASKS_WRITE)


@dataclass(frozen=True, slots=True)
class NewSecret:
    key_id: str
    secret: str
    secret_hash: str


def new_secret() -> NewSecret:
    key_id = secrets.token_hex(8)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewSecret(key_id=key_id, secret=secret, secret_hash=hash_secret(secret))


def key_id_of(secret: str) -> str | None:
    """The key id inside a well-formed secret; None for anything else."""
    match = _SECRET.match(secret)
    return match.group(1) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: a key of one tenant, with its scopes."""

    key_id: str
    tenant: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        # admin implies every other scope: an operator's key can do what its tenant's keys can.
        return scope in self.scopes or Scope.ADMIN in self.scopes

    @property
    def scope(self) -> TenantScope:
        """The tenants whose data this caller may touch: an admin's, every tenant's."""
        return EVERY_TENANT if Scope.ADMIN in self.scopes else self.tenant


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A key as listed: everything but the secret."""

    id: str
    tenant: str
    name: str | None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
