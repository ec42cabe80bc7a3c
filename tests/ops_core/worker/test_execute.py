"""Running one claimed attempt: what it writes, and how often."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentkit.errors import ModelServerError
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.registry import default_registry
from agentkit.testing import FunctionModel
from ops_core.config import Settings
from ops_core.db.access import AccessStore
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import Task
from ops_core.db.sqlite import SqliteStore
from ops_core.db.store import TaskStore
from ops_core.errors import DatabaseUnavailable
from ops_core.lifecycle import TaskStatus
from ops_core.quotas import QuotaCache
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.execute import Execution, ExecutionContext
from ops_core.worker.models import ModelCache
from tests.ops_core.db.helpers import make_task


class CountingStore:
    """The real store of either backend, counting checkpoint writes."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.checkpoints = 0
        save = store.save_checkpoint

        async def counting(*args: Any, **kwargs: Any) -> None:
            self.checkpoints += 1
            await save(*args, **kwargs)

        store.save_checkpoint = counting  # type: ignore[method-assign]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CountingStore]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url))
    try:
        yield CountingStore(open_store(engine))
    finally:
        await engine.dispose()


async def _run(store: TaskStore, goal: str) -> Task:
    async def republish(task: Task, delay: float) -> None:
        raise AssertionError("nothing here is retried")

    task = await make_task(store, agent="default", goal=goal, model="offline:default")
    claim = await store.claim(task.id, "w1")
    assert claim is not None
    ctx = ExecutionContext(store, default_registry(), ModelCache(), Settings(), republish)
    await Execution(ctx, claim, cancelled=asyncio.Event()).run()
    return await store.get(task.id, tenant=EVERY_TENANT)


async def test_a_tool_step_is_checkpointed_but_the_final_answer_is_written_once(store: CountingStore) -> None:
    # The offline model calls the calculator (step 1), then answers (step 2).
    done = await _run(store.store, "What is 6 * 7?")

    assert done.status is TaskStatus.COMPLETED and "42" in str(done.result)
    assert store.checkpoints == 1
    assert done.checkpoint is not None and done.checkpoint["steps_completed"] == 1
    types = [e.type for e in await store.store.list_events(done.id, tenant=EVERY_TENANT)]
    assert types.count("model_response") == 2 and types.count("final_answer") == 1
    assert types[-1] == "status"
    # Tokens of the checkpointed step and of the final step are both counted, once.
    assert done.input_tokens > 0 and done.output_tokens > 0


async def test_a_one_step_answer_writes_no_checkpoint(store: CountingStore) -> None:
    done = await _run(store.store, "say hello")

    assert done.status is TaskStatus.COMPLETED
    assert store.checkpoints == 0
    assert [e.type for e in await store.store.list_events(done.id, tenant=EVERY_TENANT)].count("final_answer") == 1


class FlakyStore(SqliteStore):
    """The real store, whose first two completions find the database unreachable."""

    completions = 0

    async def complete(self, *args: Any, **kwargs: Any) -> bool:
        self.completions += 1
        if self.completions <= 2:
            raise DatabaseUnavailable("the database is unreachable")
        return await super().complete(*args, **kwargs)


async def test_a_write_that_finds_the_database_down_is_retried_until_it_lands(sqlite_url: str) -> None:
    engine = create_engine(Settings(database_url=sqlite_url))
    try:
        store = FlakyStore(engine)
        done = await _run(store, "say hello")
    finally:
        await engine.dispose()

    assert done.status is TaskStatus.COMPLETED
    assert store.completions == 3


async def test_a_run_logs_one_line_when_it_starts_and_one_when_it_ends(
    store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ops_core.worker.execute"):
        done = await _run(store.store, "What is 6 * 7?")

    lines = [r for r in caplog.records if r.name == "ops_core.worker.execute"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    started, ended = lines
    assert all(str(done.id) in r.getMessage() and getattr(r, "task_id", None) == str(done.id) for r in lines)
    assert "started" in started.getMessage() and getattr(started, "attempt", None) == 1
    assert getattr(ended, "status", None) == "completed"
    assert getattr(ended, "duration_seconds", -1) >= 0
    assert getattr(ended, "input_tokens", 0) == done.input_tokens > 0
    assert getattr(ended, "output_tokens", 0) == done.output_tokens > 0


def _failing(request: ModelRequest) -> ModelResponse:
    raise ModelServerError("injected 503")


async def test_a_retry_is_logged_with_its_reason_and_delay(
    store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    real = store.store
    republished: list[float] = []

    async def republish(task: Task, delay: float) -> None:
        republished.append(delay)

    task = await make_task(real, agent="default", goal="say hello", model="offline:default", max_retries=2)
    claim = await real.claim(task.id, "w1")
    assert claim is not None
    models = ModelCache()
    models._models["offline:default"] = FunctionModel(_failing)  # this process's client for the task's model
    ctx = ExecutionContext(real, default_registry(), models, Settings(), republish)
    with caplog.at_level(logging.INFO, logger="ops_core.worker.execute"):
        await Execution(ctx, claim, cancelled=asyncio.Event()).run()

    assert (await real.get(task.id, tenant=EVERY_TENANT)).status is TaskStatus.PENDING
    ended = [r for r in caplog.records if getattr(r, "status", None) == "pending"]
    assert len(ended) == 1 and ended[0].levelno == logging.INFO
    [delay] = republished
    assert getattr(ended[0], "retry_in_seconds", None) == round(delay, 3)
    assert getattr(ended[0], "error_type", None) == "model_error"
    assert "failed, retrying" in ended[0].getMessage() and f"in {delay:.1f}s" in ended[0].getMessage()
    assert "injected 503" in ended[0].getMessage()


async def test_a_run_over_its_tenants_token_budget_fails_after_its_current_step(store: CountingStore) -> None:
    real = store.store
    access = AccessStore(real.engine)
    await access.set_quotas("t1", {"daily_token_budget": 1})
    quotas = QuotaCache(access, real, cache_seconds=0)

    async def republish(task: Task, delay: float) -> None:
        raise AssertionError("nothing here is retried")

    # The offline model calls the calculator (step 1), whose tokens spend the budget, then would answer.
    task = await make_task(real, agent="default", goal="What is 6 * 7?", model="offline:default")
    claim = await real.claim(task.id, "w1")
    assert claim is not None
    ctx = ExecutionContext(real, default_registry(), ModelCache(), Settings(), republish, quotas=quotas)
    await Execution(ctx, claim, cancelled=asyncio.Event()).run()

    done = await real.get(task.id, tenant="t1")
    assert done.status is TaskStatus.FAILED and done.error_type == "quota_exceeded"
    assert "daily token budget" in (done.error_message or "")
    assert done.checkpoint is not None and done.checkpoint["steps_completed"] == 1  # the step finished
    events = [e.type for e in await real.list_events(task.id, tenant="t1")]
    assert events.count("model_response") == 1 and "final_answer" not in events
