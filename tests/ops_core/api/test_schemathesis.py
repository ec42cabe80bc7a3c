"""Property-based conformance: schemathesis generates valid and invalid requests from the OpenAPI document
and runs every check against the real app (a SQLite file, or PostgreSQL in the integration tier, and the
in-process broker, over ASGI: no network beyond the database).

Zero server errors, zero undocumented statuses, zero responses that break their documented schema.
Bounded and derandomised, so a run is repeatable and a failure reproduces.

The run sends an admin key (every scope, so every operation does its real work); a second run sends
none and requires 401 from every ``/v1`` operation and ``/metrics``, whatever else is wrong with the request.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from ops_core.api.app import create_app
from ops_core.config import Settings, load_settings
from ops_core.db.engine import create_engine
from ops_core.db.models import API_KEYS
from ops_core.keys import Scope, new_secret
from ops_core.tenancy import DEFAULT_TENANT
from tests.ops_core.api.conftest import MAX_BODY_BYTES

UNAUTHENTICATED_EXAMPLES = 10

EXAMPLES_PER_OPERATION = 100

# The admin key the run authenticates with: made here (no I/O) so the config can name it, and stored by `admin`.
ADMIN = new_secret()

CONFIG = SchemathesisConfig.from_dict(
    {
        # Sent as the document's bearer scheme says, so schemathesis knows when a case means to leave it out.
        "auth": {"openapi": {"HTTPBearer": {"bearer": ADMIN.secret}}},
        "checks": {
            # Every built-in check runs, except these, which cannot apply here:
            # "every schema-valid request is accepted": the document cannot spell every rule of a valid request.
            # A cursor is opaque (only one this server issued is valid); the agents and the allowed models are
            # configured at runtime. A request that breaks one of those is rightly a 422; server errors and
            # undocumented statuses on such requests are still caught by the other checks.
            "positive_data_acceptance": {"enabled": False},
            # "the API does not ignore auth": its probe goes over HTTP, which an ASGI app in-process does not
            # serve; test_every_v1_operation_is_401_without_a_key below checks the same over ASGI.
            "ignored_auth": {"enabled": False},
            # Invalid data must be rejected: schemathesis' list of rejections, plus 413, the body limit's (an
            # over-long goal is often also an over-large body).
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
            },
        },
    }
)


def _settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url, broker_url="memory://", max_body_bytes=MAX_BODY_BYTES)


# The document, from an app that is built but never started (no I/O); the cases run against `app` below.
# (schemathesis' from_fixture loader does not work with pytest 9, hence the eager schema.)
schema = schemathesis.openapi.from_dict(create_app(_settings("sqlite+aiosqlite://")).openapi(), config=CONFIG)


# PostgreSQL refuses what SQLite stores (NUL, 32-bit overflows, NaN in jsonb), so the same run against it too.
@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("schemathesis") / "api.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(scope="module")
def app(database_url: str) -> Iterator[FastAPI]:
    # No runtime passed in: the lifespan opens one on schemathesis' own event loop and closes it below.
    yield create_app(_settings(database_url))
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def admin(database_url: str) -> None:
    """Store ADMIN as an admin key of the default tenant, before the app starts (on an event loop of its own)."""

    async def store() -> None:
        engine = create_engine(_settings(database_url))
        row = {
            "id": ADMIN.key_id,
            "tenant": DEFAULT_TENANT,
            "scopes": [Scope.ADMIN.value],
            "secret_hash": ADMIN.secret_hash,
            "created_at": datetime.now(UTC),
        }
        try:
            async with engine.begin() as conn:
                await conn.execute(API_KEYS.insert().values(row))
        finally:
            await engine.dispose()

    asyncio.run(store())


# A tenant's status stream never ends by itself, so a valid request would never return here: its bad
# requests are tested in test_streams.py. (A task's stream ends with its task; a random id is a 404.)
endless = schema.exclude(path="/v1/events/stream")


@endless.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # the same cases every run: a failure reproduces
    database=None,  # and no examples saved from an earlier run change them
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_its_openapi_document(app: FastAPI, admin: None, case: schemathesis.Case) -> None:
    case.call_and_validate(app=app)


@schema.parametrize()
@settings(
    max_examples=UNAUTHENTICATED_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_v1_operation_is_401_without_a_key(app: FastAPI, case: schemathesis.Case) -> None:
    (case.headers or {}).pop("Authorization", None)
    response = case.call(app=app)
    if case.method.upper() != case.operation.method.upper():
        return  # a method the path does not serve (schemathesis tries TRACE and the like): 405 comes first
    if case.path.startswith("/v1/"):
        assert response.status_code in (401, 413), f"{case.method} {case.formatted_path}: {response.status_code}"
    else:
        assert response.status_code != 401
