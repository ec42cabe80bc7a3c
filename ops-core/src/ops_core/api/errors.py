"""Every error response has one shape: ``{"error": {"code", "message"}}``.

ops-core's own errors carry their status and code (see :mod:`ops_core.errors`),
so one handler covers them all. FastAPI's and Starlette's own errors (bad
input, unknown route, wrong method) are rewritten into the same shape, and
anything unexpected becomes a generic 500 whose details stay in the log.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from ops_core.api.problems import describe_validation_errors
from ops_core.api.schemas import ErrorBody
from ops_core.errors import OpsCoreError, TooManyRequests, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

# Retry-After for 503s: a dependency that is down is usually back within seconds.
RETRY_AFTER_SECONDS = 5

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


def error_doc(description: str) -> dict[str, Any]:
    """An error status in a route's OpenAPI ``responses``: our body, so the document shows what is sent."""
    return {"model": ErrorBody, "description": description}


# Routes declare these; FastAPI would otherwise document its own HTTPValidationError for 422,
# which this API never sends (see _validation_error).
Responses = dict[int | str, dict[str, Any]]
INVALID: Responses = {422: error_doc("Invalid id, body or query; the message names the field")}
NOT_FOUND: Responses = {404: error_doc("No task with that id in the caller's tenant")}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}}
# Every /v1 operation may answer these two.
AUTH: Responses = {
    401: {
        **error_doc("No API key, or one that is malformed, unknown, revoked or expired"),
        "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    },
    403: error_doc("The key lacks the scope this operation needs"),
}
THROTTLED: Responses = {
    429: {
        **error_doc("The tenant's submission rate or daily token budget is spent; code says which"),
        "headers": _RETRY_AFTER,
    }
}
TOO_LARGE: Responses = {413: error_doc("The body is larger than OPSCORE_MAX_BODY_BYTES")}
UNAVAILABLE: Responses = {
    503: {
        **error_doc("The database or broker is unavailable"),
        "headers": _RETRY_AFTER,
    }
}


def error_response(status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"error": {"code": code, "message": message}}, headers=headers)


async def _ops_core_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpsCoreError)
    if exc.status_code >= 500:
        log.warning("%s %s failed: %s: %s", request.method, request.url.path, exc.code, exc.message)
    return ops_core_error_response(exc)


def ops_core_error_response(exc: OpsCoreError) -> JSONResponse:
    """One of our errors as its response (also for middleware, which runs outside the handlers)."""
    return error_response(exc.status_code, exc.code, exc.message, error_headers(exc))


def error_headers(exc: OpsCoreError) -> dict[str, str] | None:
    """The headers an error response carries (Retry-After, WWW-Authenticate); gRPC sends them as trailers."""
    if isinstance(exc, Unavailable):
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, TooManyRequests):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "validation_error", describe_validation_errors(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI answers 400 when a JSON body cannot even be decoded (not UTF-8, nested past
        # Python's recursion limit, an integer of too many digits): bad input like any other, so a
        # 422 in the usual shape instead of a status the API does not document.
        return error_response(422, "validation_error", f"body: {_undecodable(exc.__cause__)}")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
        # Starlette names only the methods of the first route with this path; a resource served by
        # several routes (GET and POST /v1/tasks) allows them all, as its OpenAPI document says.
        allowed = _documented_methods(request)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return error_response(exc.status_code, code, message, headers)


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _documented_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    paths = request.app.openapi()["paths"]
    # A path documented as it is (/v1/tasks/batch) is that resource, not an id of /v1/tasks/{task_id}.
    exact = paths.get(request.url.path)
    for template, item in paths.items():
        if (template == request.url.path) if exact is not None else compile_path(template)[0].match(request.url.path):
            methods.update(method.upper() for method in item if method in _HTTP_METHODS)
    if "GET" in methods:
        methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
    return sorted(methods)


def _undecodable(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"not valid UTF-8 (byte 0x{cause.object[cause.start]:02x} at position {cause.start})"
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply to decode"
    return f"cannot be decoded as JSON: {cause}"


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpsCoreError, _ops_core_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
