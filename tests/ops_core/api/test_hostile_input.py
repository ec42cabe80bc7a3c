"""The hostile-input review's findings: each input that gave a 500 (or an undocumented status) now gets
a 422 naming the field, checked before anything is stored; reads survive rows stored before the checks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ops_core.api.app import create_app
from ops_core.api.deps import get_task_service
from ops_core.api.storable import MAX_INPUT_BYTES, MAX_JSON_DEPTH
from ops_core.config import load_settings
from ops_core.db.models import NewTask
from ops_core.runtime import Runtime
from ops_core.services.tasks import TaskService
from ops_core.tenancy import DEFAULT_TENANT, EVERY_TENANT
from tests.ops_core.api.conftest import admin_headers
from tests.ops_core.api.test_errors import error_of


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


async def post_raw(client: httpx.AsyncClient, body: str | bytes) -> httpx.Response:
    return await client.post("/v1/tasks", content=body, headers={"content-type": "application/json"})


async def assert_nothing_stored(runtime: Runtime) -> None:
    page = await runtime.store.list(tenant=EVERY_TENANT, limit=10)
    assert page.items == []


def assert_422_naming(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert f"'{field}'" in error["message"]
    message: str = error["message"]
    return message


# ---- item 1: nesting, size, goal length ------------------------------------------------------------------


async def test_input_nested_256_levels_is_422_and_nothing_is_stored(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    response = await client.post("/v1/tasks", json={"goal": "x", "input": {"a": nested(256)}})

    message = assert_422_naming(response, "input")
    assert f"more than {MAX_JSON_DEPTH} levels" in message
    await assert_nothing_stored(runtime)


async def test_input_at_the_depth_limit_is_accepted(client: httpx.AsyncClient) -> None:
    # The input object is the first level.
    response = await client.post("/v1/tasks", json={"goal": "x", "input": {"a": nested(MAX_JSON_DEPTH - 2)}})

    assert response.status_code == 202, response.text


async def test_input_nested_past_the_json_parser_is_422(client: httpx.AsyncClient, runtime: Runtime) -> None:
    # Deeper than Python's recursion limit: the JSON decoder itself gives up (FastAPI made that a 400).
    response = await post_raw(client, '{"goal": "x", "input": {"a": ' + "[" * 20_000 + "]" * 20_000 + "}}")

    assert response.status_code == 422
    assert error_of(response)["message"] == "body: JSON nested too deeply to decode"
    await assert_nothing_stored(runtime)


async def test_input_over_the_size_limit_is_422(runtime: Runtime) -> None:
    # The fixture's body limit is smaller than the input limit; lift it for this one request.
    settings = runtime.settings.model_copy(update={"max_body_bytes": 4 * MAX_INPUT_BYTES})
    app = create_app(settings, runtime=runtime)
    headers = await admin_headers(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    ) as client:
        response = await client.post("/v1/tasks", json={"goal": "x", "input": {"blob": "x" * MAX_INPUT_BYTES}})

    message = assert_422_naming(response, "input")
    assert f"at most {MAX_INPUT_BYTES}" in message
    await assert_nothing_stored(runtime)


async def test_task_stored_with_deep_input_before_the_limit_still_reads(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    deep = {"a": nested(256)}
    task, _ = await runtime.store.create(
        NewTask(
            tenant=DEFAULT_TENANT,
            agent="default",
            goal="old row",
            input=deep,
            model="offline:default",
            max_retries=0,
            timeout_seconds=60,
        )
    )

    one = await client.get(f"/v1/tasks/{task.id}")
    listed = await client.get("/v1/tasks", params={"limit": 500})

    assert one.status_code == 200
    assert one.json()["input"] == deep
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [str(task.id)]


async def test_task_stored_with_unserialisable_text_before_the_checks_still_reads(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # SQLite's JSON text holds a lone surrogate as an escape; pydantic cannot write it back as UTF-8.
    task, _ = await runtime.store.create(
        NewTask(
            tenant=DEFAULT_TENANT,
            agent="default",
            goal="old row",
            input={"s": "\udfff"},
            model="offline:default",
            max_retries=0,
            timeout_seconds=60,
        )
    )

    one = await client.get(f"/v1/tasks/{task.id}")

    assert one.status_code == 200
    assert '"\\udfff"' in one.text


# ---- item 2: values the database cannot hold --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"goal": "a\u0000b"}, "goal"),
        ({"goal": "x", "model": "offline:\u0000"}, "model"),
        ({"goal": "x", "agent": "de\u0000fault"}, "agent"),
        ({"goal": "x", "idempotency_key": "k\u0000"}, "idempotency_key"),
        ({"goal": "x", "input": {"k\u0000": 1}}, "input"),
        ({"goal": "x", "input": {"k": "v\u0000"}}, "input"),
        ({"goal": "x", "input": {"k": [{"deep": ["v\u0000"]}]}}, "input"),
        ({"goal": "x", "timeout_seconds": 2**31}, "timeout_seconds"),
        ({"goal": "x", "schedule_to_start_seconds": 2**31}, "schedule_to_start_seconds"),
        ({"goal": "x", "schedule_to_start_seconds": 999_999_999_999}, "schedule_to_start_seconds"),
        ({"goal": "x", "max_retries": 2**31}, "max_retries"),
        ({"goal": "x", "priority": 2**63}, "priority"),
    ],
)
async def test_unstorable_body_values_are_422_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/tasks", json=body)

    assert_422_naming(response, field)
    await assert_nothing_stored(runtime)


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        ('{"goal": "x", "input": {"n": NaN}}', "input", "finite"),
        ('{"goal": "x", "input": {"n": [Infinity]}}', "input", "finite"),
        ('{"goal": "x", "input": {"n": -Infinity}}', "input", "finite"),
        ('{"goal": "x", "input": {"n": 1e400}}', "input", "finite"),
        ('{"goal": "x", "input": {"s": "\\udfff"}}', "input", "not valid unicode"),
        ('{"goal": "x", "input": {"\\ud800": 1}}', "input", "not valid unicode"),
        ('{"goal": "x", "model": "offline:\\udfff"}', "model", "not valid unicode"),
        ('{"goal": "x", "idempotency_key": "\\ud83d"}', "idempotency_key", "not valid unicode"),
        # pydantic's own str validation refuses these first, in its own words.
        ('{"goal": "\\udfff"}', "goal", "unable to parse raw data as a unicode string"),
        ('{"goal": "x", "agent": "\\udfff"}', "agent", "unable to parse raw data as a unicode string"),
    ],
)
async def test_non_finite_numbers_and_invalid_unicode_are_422(
    client: httpx.AsyncClient, runtime: Runtime, raw: str, field: str, says: str
) -> None:
    response = await post_raw(client, raw)

    assert says in assert_422_naming(response, field).lower()
    await assert_nothing_stored(runtime)


async def test_a_surrogate_pair_is_valid_unicode(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, '{"goal": "\\ud83d\\ude00", "input": {"s": "\\ud83d\\ude00"}}')

    assert response.status_code == 202
    assert response.json()["goal"] == "\U0001f600"


async def test_body_that_is_not_utf8_is_422(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await post_raw(client, b'{"goal": "caf\xe9"}')

    assert response.status_code == 422
    assert error_of(response) == {
        "code": "validation_error",
        "message": "body: not valid UTF-8 (byte 0xe9 at position 13)",
    }
    await assert_nothing_stored(runtime)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/tasks/{id}/events", {"after_seq": 2**31}, "after_seq"),
        ("/v1/tasks/{id}/events", {"after_seq": 2**63}, "after_seq"),
        ("/v1/tasks", {"agent": "a\u0000"}, "agent"),
        ("/v1/tasks", {"cursor": "abc\u0000"}, "cursor"),
    ],
)
async def test_unstorable_query_values_are_422_naming_the_field(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], field: str
) -> None:
    task = (await client.post("/v1/tasks", json={"goal": "x"})).json()

    response = await client.get(path.format(id=task["id"]), params=params)

    assert_422_naming(response, field)


# ---- item 3: listings leave the large fields out -------------------------------------------------------------

LARGE_FIELDS = {"input", "result", "attempt_errors"}


async def test_list_items_are_summaries_and_get_has_everything(client: httpx.AsyncClient) -> None:
    created = (await client.post("/v1/tasks", json={"goal": "x", "input": {"blob": "y" * 10_000}})).json()

    listed = (await client.get("/v1/tasks")).json()["items"]
    one = (await client.get(f"/v1/tasks/{created['id']}")).json()

    assert len(listed) == 1
    assert not LARGE_FIELDS & set(listed[0])
    assert set(one) >= LARGE_FIELDS
    assert one["input"] == {"blob": "y" * 10_000}
    assert listed[0] == {key: value for key, value in one.items() if key not in LARGE_FIELDS}


# ---- item 6: allowed models ----------------------------------------------------------------------------------


async def test_offline_model_is_allowed_when_the_default_is_offline(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tasks", json={"goal": "x", "model": "offline:other"})

    assert response.status_code == 202


async def _submit_with(runtime: Runtime, overrides: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
    """Submit to an API whose task service runs under ``overrides`` of the fixture's settings."""
    settings = load_settings(**{**runtime.settings.model_dump(), **overrides})
    service = TaskService(runtime.store, runtime.quotas, runtime.publisher, runtime.registry, settings)
    app = create_app(settings, runtime=runtime)
    app.dependency_overrides[get_task_service] = lambda: service
    headers = await admin_headers(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    ) as client:
        return await client.post("/v1/tasks", json=body)


@pytest.mark.parametrize("model", ["offline:default", " OFFLINE:x", "offline:"])
async def test_offline_model_is_refused_when_the_default_is_a_real_one(runtime: Runtime, model: str) -> None:
    response = await _submit_with(runtime, {"default_model": "openai:gpt-4o-mini"}, {"goal": "x", "model": model})

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "model_not_allowed"
    assert repr(model) in error["message"]
    await assert_nothing_stored(runtime)


@pytest.mark.parametrize(
    ("model", "status"),
    [("openai:gpt-4o", 202), ("openai:gpt-4o-mini", 202), ("anthropic:claude-x", 202), ("openai:o1", 422)],
)
async def test_allowed_models_patterns_decide(runtime: Runtime, model: str, status: int) -> None:
    overrides = {"default_model": "openai:gpt-4o", "allowed_models": "openai:gpt-4o*, anthropic:*"}

    response = await _submit_with(runtime, overrides, {"goal": "x", "model": model})

    assert response.status_code == status, response.text
    if status == 422:
        assert error_of(response)["code"] == "model_not_allowed"
