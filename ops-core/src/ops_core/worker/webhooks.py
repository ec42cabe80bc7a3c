"""The webhook duty: each worker process fills the outbox from finished tasks and sends what is due.

Each tick (``OPSCORE_WEBHOOK_POLL_SECONDS``) it runs the sweep (see
:mod:`ops_core.db.webhooks` for why the outbox is filled there and not on the
completion path), claims due deliveries and POSTs them at once, each signed
the Standard Webhooks way with the tenant's secret and checked against SSRF
again (:mod:`ops_core.callback_urls`). A 2xx answer delivers; anything else
(another status, a timeout, a refused connection, an address no longer
allowed) is retried after an exponential backoff (tenacity's
``wait_exponential``: ``OPSCORE_WEBHOOK_BACKOFF_SECONDS`` doubling up to
``OPSCORE_WEBHOOK_BACKOFF_MAX_SECONDS``), until ``OPSCORE_WEBHOOK_RETRY_HOURS``
after the end; then it is given up. Every attempt is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import httpx
import tenacity

from ops_core import callback_urls, signing
from ops_core.api.schemas import TaskPublic, to_json
from ops_core.config import Settings
from ops_core.db.models import Task
from ops_core.db.rules import utcnow
from ops_core.db.webhooks import Outcome, WebhookDelivery, WebhookStore
from ops_core.errors import InvalidCallbackUrl

log = logging.getLogger(__name__)

DELIVERY_BATCH = 50
# A claim hides a delivery from other deliverers this much longer than one POST may take.
LEASE_MARGIN_SECONDS = 30.0
MAX_ERROR_CHARS = 500
USER_AGENT = "ops-core-webhooks/1"


def render_task(task: Task) -> str:
    """The body of a task's webhook: the record ``GET /v1/tasks/{id}`` answers."""
    return to_json(TaskPublic.from_task(task)).decode()


class Backoff:
    """How long to wait before retry ``n`` (n = 1 after the first failed attempt)."""

    def __init__(self, first_seconds: float, max_seconds: float) -> None:
        self._wait = tenacity.wait_exponential(multiplier=first_seconds, min=first_seconds, max=max_seconds)

    def seconds(self, failed_attempts: int) -> float:
        state = tenacity.RetryCallState(tenacity.AsyncRetrying(), None, (), {})
        state.attempt_number = failed_attempts
        return float(self._wait(state))

    def retry_at(self, delivery: WebhookDelivery, now: datetime) -> datetime | None:
        """When to try ``delivery`` again after its attempt failed; None once past its retry period."""
        at = now + timedelta(seconds=self.seconds(delivery.attempts))
        return at if at <= delivery.expires_at else None


class WebhookDuty:
    def __init__(self, store: WebhookStore, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self._store = store
        self._timeout = settings.webhook_timeout_seconds
        self._allowed = callback_urls.allowed_hosts(settings.webhook_allowed_hosts)
        self._backoff = Backoff(settings.webhook_backoff_seconds, settings.webhook_backoff_max_seconds)
        self._client = client

    def _http(self) -> httpx.AsyncClient:
        # Made on first use, on the loop that delivers. Redirects are not followed: a 3xx could point
        # anywhere, past the SSRF check; no proxy from the environment, which would bypass it too.
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def __call__(self) -> None:
        await self._store.enqueue_finished_tasks(render_task)
        lease = timedelta(seconds=self._timeout + callback_urls.RESOLVE_SECONDS + LEASE_MARGIN_SECONDS)
        due = await self._store.claim(limit=DELIVERY_BATCH, lease=lease)
        results = await asyncio.gather(*(self.deliver(delivery) for delivery in due), return_exceptions=True)
        for delivery, result in zip(due, results, strict=True):
            if isinstance(result, Exception):
                # Not recorded (the database failed, most likely): due again once its lease ends.
                log.warning("webhook %s: attempt %d not recorded: %s", delivery.webhook_id, delivery.attempts, result)

    async def deliver(self, delivery: WebhookDelivery) -> Outcome:
        """POST ``delivery`` once and record the outcome."""
        started = utcnow()
        clock = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            secret = await self._store.secret(delivery.tenant)
            target = await callback_urls.check(delivery.url, self._allowed)
            headers = signing.sign(secret.signing_secrets(started), delivery.webhook_id, started, delivery.payload)
            headers |= {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "opscore-event": delivery.event_type,
            }
            if target.host_header is not None:
                headers["host"] = target.host_header
            extensions = {} if target.sni_hostname is None else {"sni_hostname": target.sni_hostname}
            response = await self._http().post(
                target.url,
                content=delivery.payload.encode(),
                headers=headers,
                extensions=extensions,
                timeout=self._timeout,
            )
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}"
        except InvalidCallbackUrl as exc:
            error = exc.message
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        delivered = error is None
        now = utcnow()
        outcome = Outcome(
            started_at=started,
            duration_ms=(time.perf_counter() - clock) * 1000,
            status_code=status_code,
            error=None if error is None else error[:MAX_ERROR_CHARS],
            delivered=delivered,
            retry_at=None if delivered else self._backoff.retry_at(delivery, now),
        )
        await self._store.record(delivery, outcome)
        if not delivered:
            then = "given up" if outcome.retry_at is None else f"retry at {outcome.retry_at.isoformat()}"
            log.info(
                "webhook %s to %s, attempt %d: %s; %s",
                delivery.webhook_id,
                delivery.url,
                delivery.attempts,
                error,
                then,
            )
        return outcome
