"""The webhook duty: the backoff schedule, and deliveries sent, signed, retried and recorded
(against httpx's MockTransport and a SQLite store)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from ops_core.api.schemas import TaskPublic
from ops_core.config import Settings, load_settings
from ops_core.db import migrate
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.models import NewTask
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.db.webhooks import WebhookDelivery, WebhookStatus, WebhookStore
from ops_core.tenancy import EVERY_TENANT
from ops_core.worker.webhooks import Backoff, WebhookDuty, render_task

URL = "http://127.0.0.1:9/hook"


def test_backoff_doubles_from_the_first_wait_up_to_the_cap() -> None:
    backoff = Backoff(10, 300)
    assert [backoff.seconds(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 300, 300, 300]
    assert Backoff(0.05, 1).seconds(1) == 0.05
    assert Backoff(1, 3600).seconds(10_000) == 3600, "no overflow however many attempts"


def test_backoff_gives_up_after_the_retry_period() -> None:
    now = utcnow()
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        tenant="t",
        subject_type="task",
        subject_id="x",
        round=0,
        event_type="task.completed",
        url=URL,
        payload="{}",
        status=WebhookStatus.PENDING,
        attempts=3,
        next_attempt_at=now,
        expires_at=now + timedelta(seconds=100),
        created_at=now,
    )
    assert Backoff(10, 3600).retry_at(delivery, now) == now + timedelta(seconds=40)
    assert Backoff(10, 3600).retry_at(delivery, now + timedelta(seconds=61)) is None


@pytest.fixture
async def settings(tmp_path: object) -> Settings:
    return load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/w.db",
        webhook_allowed_hosts="127.0.0.1",
        webhook_backoff_seconds=0.001,
        webhook_backoff_max_seconds=0.001,
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[TaskStore]:
    await migrate.upgrade_async(settings)
    engine = create_engine(settings)
    yield open_store(engine)
    await engine.dispose()


async def finished_task(store: TaskStore, url: str = URL) -> TaskPublic:
    new = NewTask(
        tenant="t1", agent="a", goal="g", model="offline:default", max_retries=0, timeout_seconds=60, callback_url=url
    )
    task, _ = await store.create(new)
    claim = await store.claim(task.id, "w1")
    assert claim is not None
    usage = {"input_tokens": 1, "output_tokens": 2, "reused_tokens": 0}
    assert await store.complete(task.id, claim.attempt, result={"answer": 42}, **usage)
    return TaskPublic.from_task(await store.get(task.id, tenant=EVERY_TENANT))


def duty_with(
    store: TaskStore, settings: Settings, answer: Callable[[httpx.Request], httpx.Response]
) -> tuple[WebhookDuty, WebhookStore]:
    webhooks = WebhookStore.from_settings(store.engine, settings)
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return WebhookDuty(webhooks, settings, client), webhooks


async def run_until(duty: WebhookDuty, webhooks: WebhookStore, done: Callable[[WebhookDelivery], bool]) -> None:
    for _ in range(200):
        await duty()
        found = await webhooks.deliveries(tenant=EVERY_TENANT)
        if found and done(found[0]):
            return
    raise AssertionError(f"never done: {found}")


async def test_refused_twice_then_delivered_with_one_webhook_id(store: TaskStore, settings: Settings) -> None:
    task = await finished_task(store)
    seen: list[httpx.Request] = []
    answers = iter([500, 503, 204])

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers))

    duty, webhooks = duty_with(store, settings, answer)
    await run_until(duty, webhooks, lambda d: d.status is WebhookStatus.DELIVERED)
    await duty.aclose()

    assert len(seen) == 3
    assert len({r.headers["webhook-id"] for r in seen}) == 1
    secret = (await webhooks.secret("t1")).secret
    for request in seen:
        assert str(request.url) == URL and request.method == "POST"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["opscore-event"] == "task.completed"
        body = Webhook(secret).verify(request.content, dict(request.headers))
        assert body == json.loads(task.model_dump_json())
    assert render_task(await store.get(task.id, tenant=EVERY_TENANT)) == seen[0].content.decode()

    [delivery] = await webhooks.deliveries(tenant="t1")
    assert [(a.attempt, a.status_code, a.error) for a in delivery.history] == [
        (1, 500, "HTTP 500"),
        (2, 503, "HTTP 503"),
        (3, 204, None),
    ]
    assert all(a.duration_ms >= 0 for a in delivery.history)


async def test_timeouts_and_refused_connections_are_retried(store: TaskStore, settings: Settings) -> None:
    await finished_task(store)
    failures = iter([httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])

    def answer(request: httpx.Request) -> httpx.Response:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return httpx.Response(200)

    duty, webhooks = duty_with(store, settings, answer)
    await run_until(duty, webhooks, lambda d: d.status is WebhookStatus.DELIVERED)
    await duty.aclose()
    [delivery] = await webhooks.deliveries(tenant="t1")
    assert [a.error for a in delivery.history] == ["ReadTimeout: slow", "ConnectError: refused", None]


async def test_an_address_no_longer_allowed_is_not_contacted(store: TaskStore, settings: Settings) -> None:
    await finished_task(store)
    sent: list[httpx.Request] = []
    strict = settings.model_copy(update={"webhook_allowed_hosts": ""})
    duty, webhooks = duty_with(store, strict, lambda r: sent.append(r) or httpx.Response(200))
    await duty()
    await duty.aclose()
    [delivery] = await webhooks.deliveries(tenant="t1")
    assert sent == []
    assert delivery.status is WebhookStatus.PENDING and delivery.attempts == 1
    assert "may not reach 127.0.0.1" in (delivery.history[0].error or "")


async def test_gives_up_after_the_retry_period(store: TaskStore, settings: Settings) -> None:
    await finished_task(store)
    brief = settings.model_copy(update={"webhook_retry_hours": 1e-9})
    duty, webhooks = duty_with(store, brief, lambda r: httpx.Response(500))
    await run_until(duty, webhooks, lambda d: d.status is WebhookStatus.FAILED)
    await duty.aclose()
    [delivery] = await webhooks.deliveries(tenant="t1")
    assert delivery.attempts == 1 and delivery.last_status_code == 500
