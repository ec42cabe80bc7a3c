"""The SDK's errors cover every code the API sends, and the SDK imports nothing of the server."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from ops_core import errors as server_errors
from ops_core.api.errors import _HTTP_CODES
from ops_core.client import errors
from ops_core.client._wire import error_from


def _server_classes(cls: type[server_errors.OpsCoreError]) -> list[type[server_errors.OpsCoreError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_server_classes(sub)]
    return found


SENT = {(cls.code, cls.status_code) for cls in _server_classes(server_errors.OpsCoreError) if cls.status_code < 500}
SENT |= {(code, status) for status, code in _HTTP_CODES.items()} | {("internal_error", 500)}


@pytest.mark.parametrize(("code", "status"), sorted(SENT))
def test_every_code_the_api_sends_has_its_own_class(code: str, status: int) -> None:
    response = httpx.Response(status, json={"error": {"code": code, "message": "m"}}, headers={"Retry-After": "2"})

    error = error_from(response)

    assert error.code == code and error.status_code == status and error.message == "m"
    assert type(error).code == code  # its own class, not its status's
    assert error.retry_after == 2.0


def test_an_unknown_code_or_a_foreign_body_falls_back_to_its_status() -> None:
    unknown = error_from(httpx.Response(404, json={"error": {"code": "shelf_not_found", "message": "no shelf"}}))
    assert type(unknown) is errors.NotFound and unknown.code == "shelf_not_found"

    proxy = error_from(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert type(proxy) is errors.ApiError and proxy.status_code == 502 and "Bad Gateway" in proxy.message


def test_importing_the_sdk_imports_nothing_of_the_server() -> None:
    heavy = ("sqlalchemy", "dramatiq", "fastapi", "starlette", "asyncpg", "agentkit", "ops_core.db", "ops_core.api")
    code = (
        "import sys, ops_core.client\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({heavy!r}))\n"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
