"""The OpenAPI document declares what the API really answers: our error body for every error status."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.ops_core.api.test_errors import error_of

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if path.startswith("/v1/")
    ]


def test_every_error_status_is_documented_with_the_error_body(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        errors = {status: response for status, response in operation["responses"].items() if status >= "400"}
        assert "503" in errors, f"{method} {path}"
        assert "Retry-After" in errors["503"]["headers"], f"{method} {path}"
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in errors, f"{method} {path}"
        if path.startswith("/v1/remote/"):
            # A remote agent's callback: its webhook signature is its key, and an unknown task is the same 401.
            assert "401" in errors and "404" not in errors and "security" not in operation, f"{method} {path}"
        elif "{task_id}" in path:
            assert "404" in errors, f"{method} {path}"
        if "requestBody" in operation:
            assert "413" in errors, f"{method} {path}"
        if path.startswith("/v1/") and not path.startswith("/v1/remote/"):
            assert {"401", "403"} <= errors.keys(), f"{method} {path}"
            assert operation["security"] == [{"HTTPBearer": []}], f"{method} {path}"
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"] == ERROR_BODY, f"{method} {path} {status}"


def test_the_bearer_scheme_is_declared_and_health_is_open(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: opsk_…",
    }
    for path in ("/healthz", "/readyz"):
        assert "security" not in document["paths"][path]["get"]


def test_the_error_body_is_code_and_message(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message"}
    # FastAPI's own 422 body is never sent, so it is not documented either.
    assert "HTTPValidationError" not in schemas


def test_submit_documents_the_idempotency_conflict(document: dict[str, Any]) -> None:
    assert "409" in document["paths"]["/v1/tasks"]["post"]["responses"]


def test_list_items_are_summaries(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    item = schemas["TasksPublic"]["properties"]["items"]["items"]

    assert item == {"$ref": "#/components/schemas/TaskSummary"}
    assert not {"input", "result", "attempt_errors"} & set(schemas["TaskSummary"]["properties"])
    assert {"input", "result", "attempt_errors"} <= set(schemas["TaskPublic"]["properties"])


async def test_405_allows_every_method_of_the_resource(client: httpx.AsyncClient) -> None:
    # GET and POST /v1/tasks are two routes; Starlette alone would name only the first one's method.
    response = await client.request("OPTIONS", "/v1/tasks")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
