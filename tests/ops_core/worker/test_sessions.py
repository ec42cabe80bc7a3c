"""A session's task runs with the conversation so far, and a session's tasks run one at a time in order.

The model here is a ``FunctionModel`` that keeps every request, so the tests
read exactly what the worker sent it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentkit import AgentDefinition, ConversationWindow
from agentkit.messages import AssistantMessage, Message, SystemMessage, Usage, UserMessage
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.registry import AgentRegistry
from agentkit.testing import FunctionModel
from ops_core.config import Settings
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import Task
from ops_core.db.sessions import SessionStore, session_key
from ops_core.db.store import TaskStore
from ops_core.lifecycle import TaskStatus
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.execute import Execution, ExecutionContext
from ops_core.worker.models import ModelCache
from tests.ops_core.db.helpers import USAGE, make_task

MODEL = "offline:default"
CHATTY = AgentDefinition(name="chatty", instructions="Remember what you are told.")
WINDOWED = AgentDefinition(name="windowed", instructions="Short memory.", memory=ConversationWindow(max_tokens=200))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TaskStore]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = create_engine(Settings(database_url=url, db_pool_size=20))
    try:
        yield open_store(engine)
    finally:
        await engine.dispose()


class Worker:
    """Runs claimed attempts as a worker does, with a model that keeps every request it gets."""

    def __init__(self, store: TaskStore, *, memory_tokens: int = 16_000, pause: float = 0.0) -> None:
        self.store = store
        self.requests: list[list[Message]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.pause = pause

        async def answer(request: ModelRequest) -> ModelResponse:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.pause)  # long enough for an out-of-order claim to overlap
                messages = list(request.messages)
                self.requests.append(messages)
                goal = messages[-1].content
                earlier = sum(isinstance(m, UserMessage) for m in messages) - 1
                return ModelResponse(
                    text=f"re {goal}: {earlier} earlier", usage=Usage(input_tokens=1, output_tokens=1, requests=1)
                )
            finally:
                self.in_flight -= 1

        models = ModelCache()
        models._models[MODEL] = FunctionModel(answer)
        settings = Settings(session_memory_tokens=memory_tokens)
        self.ctx = ExecutionContext(store, AgentRegistry([CHATTY, WINDOWED]), models, settings, self._republish)

    async def _republish(self, task: Task, delay: float) -> None:
        raise AssertionError("nothing here is retried")

    async def attempt(self, task_id: uuid.UUID, worker: str = "w1") -> Task:
        claim = await self.store.claim(task_id, worker)
        assert claim is not None, f"task {task_id} was held"
        await Execution(self.ctx, claim, cancelled=asyncio.Event()).run()
        return await self.store.get(task_id, tenant=EVERY_TENANT)


# A tenant of this module's own: the PostgreSQL database is shared with other modules' tests, which
# leave tasks and quotas (max_running) of their tenants behind.
TENANT = f"sessions-{uuid.uuid4().hex[:8]}"


async def session_of(store: TaskStore, agent: str = "chatty") -> uuid.UUID:
    return (await SessionStore(store.engine).create(tenant=TENANT, agent=agent, metadata={})).id


async def turn(store: TaskStore, session_id: uuid.UUID, goal: str, agent: str = "chatty", **more: Any) -> Task:
    """A task of the session, as TaskService stores it."""
    return await make_task(
        store,
        tenant=TENANT,
        agent=agent,
        goal=goal,
        model=MODEL,
        input={},
        session_id=session_id,
        concurrency_key=session_key(session_id),
        concurrency_limit=1,
        **more,
    )


def said(messages: list[Message]) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in messages if not isinstance(m, SystemMessage)]


async def test_the_model_sees_the_earlier_completed_turns_and_not_a_failed_one(store: TaskStore) -> None:
    worker = Worker(store)
    session = await session_of(store)
    first = await turn(store, session, "my name is Ada")
    second = await turn(store, session, "this one fails")
    third = await turn(store, session, "what is my name?")

    done = await worker.attempt(first.id)
    assert done.status is TaskStatus.COMPLETED and done.result == "re my name is Ada: 0 earlier"
    claim = await store.claim(second.id, "w1")
    assert claim is not None
    assert await store.fail(claim.task.id, claim.attempt, error_type="agent_error", error_message="boom", **USAGE)
    done = await worker.attempt(third.id)

    assert said(worker.requests[-1]) == [
        ("user", "my name is Ada"),
        ("assistant", "re my name is Ada: 0 earlier"),
        ("user", "what is my name?"),
    ]
    assert done.result == "re what is my name?: 1 earlier"
    # Its turn is now part of the conversation too: the next task sees both.
    fourth = await turn(store, session, "and again?")
    await worker.attempt(fourth.id)
    assert [content for role, content in said(worker.requests[-1]) if role == "user"] == [
        "my name is Ada",
        "what is my name?",
        "and again?",
    ]
    # A task outside the session sees nothing of it.
    alone = await make_task(store, tenant=TENANT, agent="chatty", goal="who am I?", model=MODEL, input={})
    await worker.attempt(alone.id)
    assert said(worker.requests[-1]) == [("user", "who am I?")]


async def test_the_memory_budget_drops_the_oldest_turns(store: TaskStore) -> None:
    # An agent without a window gets OPSCORE_SESSION_MEMORY_TOKENS; one with a window keeps its own.
    for agent, settings_tokens in (("chatty", 200), ("windowed", 16_000)):
        worker = Worker(store, memory_tokens=settings_tokens)
        session = await session_of(store, agent)
        for i in range(6):
            await worker.attempt((await turn(store, session, f"fact number {i} " + "x" * 100, agent=agent)).id)
        last = said(worker.requests[-1])
        users = [content for role, content in last if role == "user"]
        assert users[-1].startswith("fact number 5"), "the goal is always sent"
        assert "fact number 0" not in " ".join(users), f"{agent}: the oldest turn was dropped"
        assert 1 < len(users) < 6, f"{agent}: some turns fit"
        assert last[0][0] == "user", "a turn is dropped whole: the request never opens with an answer"


async def test_tasks_submitted_at_once_run_one_at_a_time_in_order_across_workers(store: TaskStore) -> None:
    worker = Worker(store, pause=0.05)
    session = await session_of(store)
    tasks = [await turn(store, session, f"step {i}") for i in range(6)]
    order: list[uuid.UUID] = []

    async def work(name: str) -> None:
        # Each "worker" tries every unfinished task in its own random order, as redelivered messages
        # and the relay's republishing would hand them out, and runs what it manages to claim.
        rng = random.Random(name)
        while len(order) < len(tasks):
            for task in rng.sample(tasks, len(tasks)):
                claim = await store.claim(task.id, name)
                if claim is not None:
                    order.append(task.id)
                    await Execution(worker.ctx, claim, cancelled=asyncio.Event()).run()
            await asyncio.sleep(0.01)

    async with asyncio.timeout(60):
        await asyncio.gather(*(work(f"w{i}") for i in range(4)))

    assert order == [t.id for t in tasks]
    assert worker.most_in_flight == 1
    for i, messages in enumerate(worker.requests):
        assert [c for role, c in said(messages) if role == "user"] == [f"step {k}" for k in range(i + 1)]
    finished = [await store.get(t.id, tenant=EVERY_TENANT) for t in tasks]
    assert all(t.status is TaskStatus.COMPLETED for t in finished)
    assert [t.result for t in finished] == [f"re step {i}: {i} earlier" for i in range(6)]


async def test_a_structured_result_is_the_assistants_json(store: TaskStore) -> None:
    worker = Worker(store)
    session = await session_of(store)
    first = await turn(store, session, "give me data")
    claim = await store.claim(first.id, "w1")
    assert claim is not None
    assert await store.complete(claim.task.id, claim.attempt, result={"b": 1, "a": [2]}, **USAGE)
    await worker.attempt((await turn(store, session, "and now?")).id)
    assert AssistantMessage(content='{"a": [2], "b": 1}') in worker.requests[-1]
