"""Which callback URLs ops-core will POST to: no SSRF.

A ``callback_url`` must be ``http`` or ``https`` with a host, and every
address its host resolves to must be public: loopback, private, link-local,
shared (CGNAT), multicast, reserved and unspecified addresses are refused,
IPv4-mapped IPv6 included. ``OPSCORE_WEBHOOK_ALLOWED_HOSTS`` names hosts
(exactly as written in the URL, or IP addresses) that are let through anyway,
e.g. a receiver on the same machine.

The check runs at submission (a 422 naming the address) and again before
every delivery, since DNS can change. A delivery then connects to the very
address it checked (the URL's host goes in the Host header and, for https,
the TLS server name), so a name that re-resolves elsewhere between the check
and the connection (DNS rebinding) cannot redirect it. Redirects are not
followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from ops_core.config import comma_list
from ops_core.errors import InvalidCallbackUrl

MAX_URL_CHARS = 2000
RESOLVE_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    """Where a delivery connects: ``url`` with its host replaced by a checked address, unless allowed by name."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


def allowed_hosts(setting: str) -> frozenset[str]:
    return frozenset(host.lower().strip("[]") for host in comma_list(setting))


def parse(url: str) -> SplitResult:
    """The URL's parts, or :class:`InvalidCallbackUrl` saying what is wrong with it."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidCallbackUrl(f"callback_url is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise InvalidCallbackUrl(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidCallbackUrl(f"callback_url must be http or https, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise InvalidCallbackUrl("callback_url has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidCallbackUrl("callback_url must not carry credentials; the payload is signed instead")
    if any(char.isspace() or ord(char) < 0x20 for char in url):
        raise InvalidCallbackUrl("callback_url must not contain whitespace or control characters")
    return parts


def forbidden(address: IPAddress) -> bool:
    """Loopback, private, link-local, shared, reserved, multicast or unspecified: anything not global."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to; :class:`InvalidCallbackUrl` if it resolves to none."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise InvalidCallbackUrl(f"callback_url host {host!r} does not resolve: {exc or 'timed out'}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        # The scope of a link-local IPv6 address ("fe80::1%eth0") is not part of the address.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise InvalidCallbackUrl(f"callback_url host {host!r} does not resolve")
    return addresses


async def check(url: str, allowed: frozenset[str]) -> Target:
    """Where to POST ``url``, after checking that it may be reached; :class:`InvalidCallbackUrl` if not."""
    parts = parse(url)
    host = (parts.hostname or "").lower()
    if host in allowed:
        return Target(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    for address in addresses:
        if str(address) in allowed:
            continue
        if forbidden(address):
            shown = host if str(address) == host else f"{host} ({address})"
            raise InvalidCallbackUrl(
                f"callback_url may not reach {shown}: loopback, private and link-local addresses are refused"
                " unless OPSCORE_WEBHOOK_ALLOWED_HOSTS names them"
            )
    pinned = addresses[0]
    if str(pinned) == host:
        return Target(url)
    literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    return Target(
        urlunsplit(parts._replace(netloc=netloc)),
        host_header=host_header,
        sni_hostname=parts.hostname if parts.scheme == "https" else None,
    )
