"""Runs tasks of remote agents: the signed delivery, and the watch that settles what they leave.

A remote agent runs outside ops-core behind an HTTP endpoint (registered with
``POST /v1/agents/remote``). ops-core still owns its tasks: the same claim,
the same lifecycle, the same fenced writes. Only the run happens elsewhere.

**Delivery (a worker's slot for seconds, not hours).** A worker claims the
task as any other (pending → running, attempt N) and, finding its agent among
the tenant's remote agents rather than the local registry, POSTs one signed
webhook (Standard Webhooks, :mod:`ops_core.signing`) to the agent's URL with
the task, its attempt and the callback URLs. A 2xx answer hands the attempt
over (:meth:`RemoteAgentStore.hand_over`, fenced on the attempt): the task
stays ``running`` with ``worker_id = 'remote:<agent>'`` and a lease of
``OPSCORE_REMOTE_LEASE_SECONDS``, and the worker's slot is free at once. A
delivery that fails is retried three times within the attempt (transport
errors, 408, 429 and 5xx); then the attempt fails *retryably*, and the
lifecycle's retry decision (backoff, ``max_retries``) sends the task back to
pending for a later delivery, as a model outage would. Any other 4xx is the
agent refusing the task: it fails at once. Every delivery of one attempt
carries the same ``webhook-id`` (``task_<id>_<attempt>``), so a receiver can
drop duplicates.

**Callbacks.** The agent reports events and its result to the API, signed
with the same secret (``api/routes/remote.py``); each accepted callback
extends the lease, and each write is fenced on the attempt.

**The watch** (a periodic duty of every worker, one indexed read per pass
when nothing is held) settles the attempts no callback will:

* a cancel request: the cancel webhook is sent (by exactly one worker,
  :meth:`RemoteAgentStore.take_cancel`), and the task ends ``cancelled``;
* the task's ``timeout_seconds`` passed since the claim: cancel webhook,
  then ``failed`` with ``timeout``, as a local run's timeout does (the
  reaper's ``fail_expired`` remains the backstop);
* the lease expired (the agent went silent): cancel webhook, then the
  lifecycle decides: retry with backoff, or ``failed`` with
  ``remote_agent_lost`` when no retries are left.

Each settlement is one write fenced on the attempt, so many workers may
watch at once and each attempt is settled once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from agentkit.errors import RunError
from ops_core.config import Settings
from ops_core.db.models import NewEvent, Task
from ops_core.db.remote import RemoteAgent, RemoteAgentStore, RemoteRun
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.domain import ErrorType, EventType
from ops_core.lifecycle import Retry, RetryPolicy
from ops_core.redact import redact_text
from ops_core.signing import signed_headers
from ops_core.tenancy import EVERY_TENANT

log = logging.getLogger(__name__)

Republish = Callable[[Task, float], Awaitable[None]]

DELIVERY_ATTEMPTS = 3
# Attempts and callback ids are forgotten this long after they stop mattering (the signature
# tolerance is five minutes, so an older callback id is refused as too old anyway).
HOUSEKEEPING_SECONDS = 60.0
CALLBACK_ID_KEEP = timedelta(minutes=10)


class RemoteDeliveryFailed(RunError):
    """The task's webhook did not reach its remote agent, or the agent refused it."""

    kind = "remote_delivery_failed"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Transient(Exception):
    """An answer worth sending again: 408, 429 or 5xx."""


def callback_urls(base_url: str, task_id: object) -> dict[str, str]:
    base = base_url.rstrip("/") + f"/v1/remote/tasks/{task_id}"
    return {"events": base + "/events", "result": base + "/result"}


def task_message(task: Task, attempt: int, callback_base: str) -> dict[str, Any]:
    """What a remote agent receives for one attempt of a task (documented in the README)."""
    return {
        "type": "task",
        "task_id": str(task.id),
        "attempt": attempt,
        "agent": task.agent,
        "goal": task.goal,
        "input": task.input,
        "model": task.model,
        "timeout_seconds": task.timeout_seconds,
        "callbacks": callback_urls(callback_base, task.id),
    }


class RemoteAgents:
    """The worker process's side of remote agents: :meth:`deliver` for a claimed task, and the watch duty."""

    def __init__(
        self,
        store: TaskStore,
        agents: RemoteAgentStore,
        settings: Settings,
        *,
        policy: RetryPolicy,
        republish: Republish,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._store = store
        self._agents = agents
        self._settings = settings
        self._policy = policy
        self._republish = republish
        self._client = client or httpx.AsyncClient(timeout=settings.remote_delivery_timeout_seconds)
        self._callback_base = settings.remote_callback_url or settings.api_url
        self._housekept = 0.0

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- delivery ------------------------------------------------------------------------------

    async def deliver(self, task: Task, attempt: int) -> bool:
        """Send ``attempt`` of ``task`` to its remote agent and hand the attempt over.

        False if the tenant has no remote agent by that name; raises :class:`RemoteDeliveryFailed`.
        """
        agent = await self._agents.get(task.tenant, task.agent)
        if agent is None:
            return False
        msg_id = f"task_{task.id}_{attempt}"
        status = await self._send(agent, msg_id, task_message(task, attempt, self._callback_base))
        lease_until = utcnow() + timedelta(seconds=self._settings.remote_lease_seconds)
        event = NewEvent(EventType.REMOTE_DELIVERED.value, {"agent": agent.name, "status_code": status})
        if await self._agents.hand_over(task.id, attempt, agent=agent.name, lease_until=lease_until, events=[event]):
            log.info(
                "task %s: attempt %d delivered to remote agent %s",
                task.id,
                attempt,
                agent.name,
                extra={"task_id": str(task.id), "attempt": attempt, "agent": agent.name},
            )
        return True

    async def _send(self, agent: RemoteAgent, msg_id: str, message: dict[str, Any]) -> int:
        body = json.dumps(message, separators=(",", ":")).encode()
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((httpx.TransportError, _Transient)),
                wait=wait_exponential_jitter(initial=0.5, max=4.0),
                stop=stop_after_attempt(DELIVERY_ATTEMPTS),
                reraise=True,
            ):
                with attempt:
                    # Signed per try: the timestamp must be fresh, the id stays the same.
                    headers = signed_headers(agent.secret, msg_id, body)
                    response = await self._client.post(agent.url, content=body, headers=headers)
                    if response.status_code in (408, 429) or response.status_code >= 500:
                        raise _Transient(f"HTTP {response.status_code}")
        except (httpx.HTTPError, _Transient) as exc:
            raise RemoteDeliveryFailed(
                f"remote agent {agent.name!r} at {agent.url} did not take the webhook after"
                f" {DELIVERY_ATTEMPTS} tries: {_describe(exc)}",
                retryable=True,
            ) from None
        if not response.is_success:
            raise RemoteDeliveryFailed(
                f"remote agent {agent.name!r} refused the webhook: HTTP {response.status_code}"
                f" {redact_text(response.text[:300])}",
                retryable=False,
            )
        return response.status_code

    # ---- the watch -----------------------------------------------------------------------------

    async def __call__(self) -> None:
        now = utcnow()
        if now.timestamp() - self._housekept >= HOUSEKEEPING_SECONDS:
            self._housekept = now.timestamp()
            await self._agents.drop_settled()
            await self._agents.prune_callbacks(now - CALLBACK_ID_KEEP)
        sending = timedelta(seconds=DELIVERY_ATTEMPTS * (self._settings.remote_delivery_timeout_seconds + 4))
        for run in await self._agents.held():
            if run.cancel_sent_at is not None and now - run.cancel_sent_at < sending:
                continue  # another worker is sending its cancel webhook, and settles it next
            if run.cancel_requested:
                events = await self._cancel(run, "cancel requested")
                if events is not None:
                    await self._store.finish_cancelled(
                        run.task_id, run.attempt, input_tokens=0, output_tokens=0, reused_tokens=0, events=events
                    )
            elif run.claimed_at + timedelta(seconds=run.timeout_seconds) < now:
                events = await self._cancel(run, "timeout")
                message = f"the task ran longer than its timeout_seconds={run.timeout_seconds}"
                if events is not None:
                    await self._fail(run, ErrorType.TIMEOUT.value, message, events)
            elif run.lease_until < now:
                await self._lost(run, now)

    async def _lost(self, run: RemoteRun, now: datetime) -> None:
        message = (
            f"remote agent {run.agent!r} sent no callback for {self._settings.remote_lease_seconds:g}s"
            f" (OPSCORE_REMOTE_LEASE_SECONDS) during attempt {run.attempt}"
        )
        events = await self._cancel(run, "lease expired")
        if events is None:
            return
        error_type = ErrorType.REMOTE_AGENT_LOST.value
        decision = self._policy.decide(attempt=run.attempt, max_retries=run.max_retries, retryable=True)
        if not isinstance(decision, Retry):
            await self._fail(run, error_type, message, events)
            return
        failed = NewEvent(
            EventType.ATTEMPT_FAILED.value,
            {"attempt": run.attempt, "type": error_type, "message": message, "retry_in_seconds": decision.delay},
        )
        moved = await self._store.schedule_retry(
            run.task_id,
            run.attempt,
            error_type=error_type,
            error_message=message,
            run_after=now + timedelta(seconds=decision.delay),
            input_tokens=0,
            output_tokens=0,
            reused_tokens=0,
            events=[*events, failed],
        )
        if moved:
            log.warning("task %s: %s; retrying in %.1fs", run.task_id, message, decision.delay)
            await self._republish(await self._store.get(run.task_id, tenant=EVERY_TENANT), decision.delay)

    async def _fail(self, run: RemoteRun, error_type: str, message: str, events: list[NewEvent]) -> None:
        error = NewEvent(EventType.ERROR.value, {"type": error_type, "message": message})
        if await self._store.fail(
            run.task_id,
            run.attempt,
            error_type=error_type,
            error_message=message,
            input_tokens=0,
            output_tokens=0,
            reused_tokens=0,
            events=[*events, error],
        ):
            log.info("task %s: failed (%s: %s)", run.task_id, error_type, message)

    async def _cancel(self, run: RemoteRun, reason: str) -> list[NewEvent] | None:
        """Send the attempt's cancel webhook (once across workers); the event recording it.

        None: another worker's watch took the cancel a moment ago, and settles the attempt with the
        event of its own webhook; settling it here too would end the task without that event. A cancel
        taken long ago (the watch only gets here once its sending time is over) was taken by a worker
        that stopped before settling: this one settles it.
        """
        if not await self._agents.take_cancel(run.task_id, run.attempt):
            return [] if run.cancel_sent_at is not None else None
        agent = await self._agents.get(run.tenant, run.agent)
        if agent is None:
            gone = {"reason": reason, "delivered": False, "error": "the remote agent was deleted"}
            return [NewEvent(EventType.REMOTE_CANCEL.value, gone)]
        message = {"type": "cancel", "task_id": str(run.task_id), "attempt": run.attempt, "reason": reason}
        payload: dict[str, Any] = {"reason": reason}
        try:
            payload["status_code"] = await self._send(agent, f"cancel_{run.task_id}_{run.attempt}", message)
            payload["delivered"] = True
        except RemoteDeliveryFailed as exc:
            # The task ends all the same: a late callback of this attempt is refused (409).
            payload["delivered"] = False
            payload["error"] = str(exc)
        return [NewEvent(EventType.REMOTE_CANCEL.value, payload)]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
