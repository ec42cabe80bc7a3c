"""Whose data a caller may touch: one tenant's, or (an admin's, or the system's) every tenant's.

Every store operation a caller makes names its scope explicitly, with no
default, so a read or write that forgets the tenant fails to call at all.
"""

from __future__ import annotations

import enum
import re

DEFAULT_TENANT = "default"
"""The tenant of tasks stored before tenants existed, and the one a server with auth disabled acts as."""

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
"""Tenant names: lower-case letters, digits, ``_ . -``; at most 100 characters."""


class EveryTenant(enum.Enum):
    """The scope of an admin or of the system (workers, the relay): not one tenant but all of them."""

    EVERY = "every"


EVERY_TENANT = EveryTenant.EVERY

TenantScope = str | EveryTenant


def tenant_or_none(scope: TenantScope) -> str | None:
    """The tenant to filter on, or None for every tenant (the one place a scope becomes a filter)."""
    return None if scope is EVERY_TENANT else scope
