"""A process-wide switch that stops real provider requests (used by tests).

Provider clients call :func:`check_real_request` just before they send
anything over the network. When requests are blocked the call raises
:class:`RealRequestBlockedError` unless the target is a loopback address, so a
test suite can still point a client at a local fake server.

The switch is a module-level flag, deliberately not an environment variable:
importing agentkit must read no env vars, and a flag cannot leak into child
processes by accident.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from agentkit.errors import RealRequestBlockedError

__all__ = [
    "allow_model_requests",
    "block_real_requests",
    "check_real_request",
    "is_loopback_url",
    "real_requests_allowed",
]

_lock = threading.Lock()
_allowed = True

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def real_requests_allowed() -> bool:
    """Whether provider clients may currently reach non-loopback hosts."""
    return _allowed


def allow_model_requests(allowed: bool) -> None:
    """Set the switch for the whole process (``False`` blocks real requests)."""
    global _allowed
    with _lock:
        _allowed = allowed


@contextmanager
def block_real_requests() -> Iterator[None]:
    """Block real requests inside the ``with`` block, restoring the previous state after."""
    global _allowed
    with _lock:
        previous = _allowed
        _allowed = False
    try:
        yield
    finally:
        with _lock:
            _allowed = previous


def is_loopback_url(base_url: str | None) -> bool:
    """True when ``base_url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    if not base_url:
        return False
    # urlsplit needs a scheme to find the host; bare "localhost:8080" would parse as a scheme.
    target = base_url if "//" in base_url else f"//{base_url}"
    try:
        host = urlsplit(target).hostname
    except ValueError:
        return False
    if host is None:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_real_request(provider: str, base_url: str | None = None) -> None:
    """Raise if real requests are blocked and ``base_url`` is not a loopback address.

    ``base_url=None`` means the provider's public default endpoint, which is
    never loopback.
    """
    if _allowed or is_loopback_url(base_url):
        return
    where = base_url or "its default endpoint"
    raise RealRequestBlockedError(
        f"real model requests are blocked (agentkit.testing.block_real_requests); "
        f"refusing to call provider {provider!r} at {where}"
    )
