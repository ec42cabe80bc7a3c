"""Credential and base-URL resolution shared by the provider clients.

Explicit constructor arguments always win over the environment, and the
environment is read only when a model is built, never at import time.
"""

from __future__ import annotations

import os

from agentkit.errors import MissingCredentialsError, MissingDependencyError

__all__ = ["missing_sdk", "resolve_api_key", "resolve_optional"]


def resolve_optional(explicit: str | None, *env_vars: str) -> str | None:
    """``explicit`` if given, else the first non-empty env var among ``env_vars``."""
    if explicit:
        return explicit
    for name in env_vars:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def resolve_api_key(provider: str, explicit: str | None, *env_vars: str) -> str:
    """Like :func:`resolve_optional` but a missing key is an error naming the env var(s)."""
    key = resolve_optional(explicit, *env_vars)
    if key is None:
        names = " or ".join(env_vars)
        raise MissingCredentialsError(f"no API key for provider {provider!r}: set {names} or pass api_key=...")
    return key


def missing_sdk(provider: str, package: str, extra: str, cause: ImportError) -> MissingDependencyError:
    return MissingDependencyError(
        f"provider {provider!r} needs the {package!r} package: pip install 'agentkit[{extra}]' ({cause})"
    )
