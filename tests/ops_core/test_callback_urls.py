"""The SSRF checks on callback URLs: which URLs and addresses are refused, and where a delivery connects."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from ops_core import callback_urls
from ops_core.callback_urls import allowed_hosts, check, forbidden
from ops_core.errors import InvalidCallbackUrl

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared (CGNAT)
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_not(address: str) -> None:
    assert not forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://127.0.0.1:6379/", "http or https"),
        ("example.com/hook", "http or https"),
        ("http:///path", "no host"),
        ("http://user:pw@93.184.216.34/", "credentials"),
        ("http://93.184.216.34:99999/", "not a valid URL"),
        ("http://93.184.216.34/a b", "whitespace"),
        ("http://127.0.0.1:8080/hook", "127.0.0.1"),
        ("http://[::1]/hook", "::1"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://0x7f000001/", "does not resolve"),
        ("http://" + "a" * 2000 + ".com/", "longer than"),
    ],
)
async def test_refused_urls_name_the_problem(url: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror("no such host")

    monkeypatch.setattr("asyncio.BaseEventLoop.getaddrinfo", no_dns)
    with pytest.raises(InvalidCallbackUrl, match="callback_url") as caught:
        await check(url, NONE)
    assert says in caught.value.message


def _resolving(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> list[str]:
    asked: list[str] = []

    async def fake(self: Any, host: str, port: int, **kwargs: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr("asyncio.BaseEventLoop.getaddrinfo", fake)
    return asked


async def test_a_name_that_resolves_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolving(monkeypatch, "93.184.216.34", "10.0.0.7")
    with pytest.raises(InvalidCallbackUrl, match=r"hooks\.example\.com \(10\.0\.0\.7\)"):
        await check("https://hooks.example.com/in", NONE)


async def test_a_public_name_is_pinned_to_the_address_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _resolving(monkeypatch, "93.184.216.34")
    target = await check("https://Hooks.Example.com:8443/in?x=1", NONE)
    assert asked == ["hooks.example.com"]
    assert target.url == "https://93.184.216.34:8443/in?x=1"
    assert target.host_header == "Hooks.Example.com:8443"
    assert target.sni_hostname == "hooks.example.com"


async def test_a_public_ip_literal_goes_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _resolving(monkeypatch)
    target = await check("http://93.184.216.34/in", NONE)
    assert asked == [] and target == callback_urls.Target("http://93.184.216.34/in")


async def test_allowed_hosts_let_a_private_host_through(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolving(monkeypatch, "127.0.0.1")
    allowed = allowed_hosts("127.0.0.1, LOCALHOST,[::1]")
    assert allowed == {"127.0.0.1", "localhost", "::1"}
    assert (await check("http://localhost:9000/in", allowed)).url == "http://localhost:9000/in"
    assert (await check("http://127.0.0.1:9000/in", allowed)).url == "http://127.0.0.1:9000/in"
    assert (await check("http://[::1]:9000/in", allowed)).url == "http://[::1]:9000/in"
    # An allowed address is allowed whatever name reaches it.
    assert (await check("http://receiver.internal/in", allowed)).host_header == "receiver.internal"
    with pytest.raises(InvalidCallbackUrl):
        await check("http://10.0.0.1/in", allowed)
