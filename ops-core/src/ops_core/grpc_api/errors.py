"""ops-core's errors as gRPC statuses: the one place a domain error gets its status code.

Each error already has its HTTP status (see :mod:`ops_core.errors`); the gRPC
code follows from that status, so the classification lives once and REST and
gRPC cannot disagree. The message is the REST API's, word for word; the REST
error code travels as trailing metadata ``error-code``, and what REST sends
as headers (``retry-after``, ``www-authenticate``) as trailing metadata too.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from ops_core.api.errors import error_headers
from ops_core.errors import OpsCoreError

log = logging.getLogger(__name__)

STATUS_CODES: dict[int, grpc.StatusCode] = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    # A conflict is with the task's state (finished, retried too often, a key used for another request).
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

INTERNAL_MESSAGE = "internal server error"


def status_code(exc: OpsCoreError) -> grpc.StatusCode:
    return STATUS_CODES.get(exc.status_code, grpc.StatusCode.INTERNAL)


def trailers(exc: OpsCoreError) -> tuple[tuple[str, str], ...]:
    headers = error_headers(exc) or {}
    return (("error-code", exc.code), *((name.lower(), value) for name, value in headers.items()))


async def abort(context: grpc.aio.ServicerContext[object, object], exc: OpsCoreError) -> NoReturn:
    """End the call with ``exc``'s status, message and trailers."""
    if exc.status_code >= 500:
        log.warning("gRPC call failed: %s: %s", exc.code, exc.message)
    context.set_trailing_metadata(trailers(exc))
    await context.abort(status_code(exc), exc.message)
    raise AssertionError("unreachable: abort raises")  # for the type checker, which cannot see it


async def abort_unexpected(context: grpc.aio.ServicerContext[object, object], exc: Exception) -> NoReturn:
    """A bug, not the caller's fault: the details stay in the log, as a REST 500's do."""
    log.error("unhandled error in a gRPC call", exc_info=exc)
    context.set_trailing_metadata((("error-code", "internal_error"),))
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    raise AssertionError("unreachable: abort raises")
