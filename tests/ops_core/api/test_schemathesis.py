"""Property-based conformance: schemathesis generates valid and invalid requests from the OpenAPI document
and runs every check against the real app (a SQLite file, or PostgreSQL in the integration tier, and the
in-process broker, over ASGI: no network beyond the database).

Zero server errors, zero undocumented statuses, zero responses that break their documented schema.
Bounded and derandomised, so a run is repeatable and a failure reproduces.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from ops_core.api.app import create_app
from ops_core.config import Settings, load_settings
from tests.ops_core.api.conftest import MAX_BODY_BYTES

EXAMPLES_PER_OPERATION = 100

CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # Every built-in check runs, except these, which cannot apply here:
            # "every schema-valid request is accepted": the document cannot spell every rule of a valid request.
            # A cursor is opaque (only one this server issued is valid); the agents and the allowed models are
            # configured at runtime. A request that breaks one of those is rightly a 422; server errors and
            # undocumented statuses on such requests are still caught by the other checks.
            "positive_data_acceptance": {"enabled": False},
            # Invalid data must be rejected: schemathesis' list of rejections, plus 413, the body limit's (an
            # over-long goal is often also an over-large body).
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
            },
        }
    }
)


def _settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url, broker_url="memory://", max_body_bytes=MAX_BODY_BYTES)


# The document, from an app that is built but never started (no I/O); the cases run against `app` below.
# (schemathesis' from_fixture loader does not work with pytest 9, hence the eager schema.)
schema = schemathesis.openapi.from_dict(create_app(_settings("sqlite+aiosqlite://")).openapi(), config=CONFIG)


# PostgreSQL refuses what SQLite stores (NUL, 32-bit overflows, NaN in jsonb), so the same run against it too.
@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("schemathesis") / "api.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
    # No runtime passed in: the lifespan opens one on schemathesis' own event loop and closes it below.
    yield create_app(_settings(url))
    asgi.shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # the same cases every run: a failure reproduces
    database=None,  # and no examples saved from an earlier run change them
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_its_openapi_document(app: FastAPI, case: schemathesis.Case) -> None:
    case.call_and_validate(app=app)
