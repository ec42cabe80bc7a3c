"""Remote agents, the API's side: registering them, and the signed callbacks through which they report.

A callback is accepted only if its Standard Webhooks signature verifies with
the secret of the remote agent that holds the task (:mod:`ops_core.signing`:
constant-time comparison, five minutes of timestamp tolerance) and its
``webhook-id`` was never accepted for that task before (a replay inside the
tolerance). Anything else is the same 401, whether the task exists or not,
and changes nothing. An accepted callback then writes like a worker would:
fenced on the attempt it names, through the lifecycle's moves and its retry
decision, so a callback of an attempt that has moved on (cancelled, timed out,
retried) changes nothing either (409).

The worker's side (delivery, cancel, timeouts, lost agents) is :mod:`ops_core.worker.remote`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agentkit.registry import AgentRegistry
from ops_core.config import Settings
from ops_core.db.models import NewEvent, Task
from ops_core.db.remote import RemoteAgent, RemoteAgentStore
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.domain import ErrorType, EventType
from ops_core.errors import (
    AgentExists,
    AgentNotFound,
    AttemptSuperseded,
    DatabaseUnavailable,
    InvalidSignature,
    LeaseLost,
    TaskNotFound,
)
from ops_core.lifecycle import RUNNING, Retry
from ops_core.redact import redact_text
from ops_core.signing import verify
from ops_core.tenancy import EVERY_TENANT

UNVERIFIED = "the callback's signature is missing, invalid or outside the timestamp tolerance"
REPLAYED = "this callback's webhook-id was already accepted (a replay)"
MAX_MESSAGE_ID_CHARS = 150


@dataclass(frozen=True, slots=True)
class Verified:
    """A callback whose signature checked out, for ``task``, held by ``agent``."""

    task: Task
    agent: RemoteAgent
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What the remote agent reports at the end of its attempt."""

    status: str  # completed | failed | cancelled
    result: Any = None
    error_type: str = "agent_error"
    error_message: str = ""
    retryable: bool = False
    input_tokens: int = 0
    output_tokens: int = 0


class RemoteAgentService:
    def __init__(self, store: TaskStore, agents: RemoteAgentStore, registry: AgentRegistry, settings: Settings) -> None:
        self._store = store
        self._agents = agents
        self._registry = registry
        self._settings = settings

    # ---- registrations -------------------------------------------------------------------------

    async def register(
        self, *, tenant: str, name: str, url: str, secret: str, description: str, model: str | None
    ) -> RemoteAgent:
        if name in self._registry:
            raise AgentExists(f"{name!r} is the name of a local agent (OPSCORE_AGENTS); choose another")
        return await self._agents.register(
            tenant=tenant, name=name, url=url, secret=secret, description=description, model=model
        )

    async def list(self, tenant: str) -> list[RemoteAgent]:
        return await self._agents.list(tenant)

    async def delete(self, tenant: str, name: str) -> None:
        if not await self._agents.delete(tenant, name):
            raise AgentNotFound(f"no remote agent named {name!r} in tenant {tenant!r}")

    # ---- callbacks -------------------------------------------------------------------------------

    async def verify(self, task_id: str, body: bytes, headers: Mapping[str, str]) -> Verified:
        """The callback's task and agent if its signature is good and new; :class:`InvalidSignature` otherwise."""
        try:
            task = await self._store.get(uuid.UUID(task_id), tenant=EVERY_TENANT)
        except (ValueError, TaskNotFound):
            raise InvalidSignature(UNVERIFIED) from None
        agent = await self._agents.get(task.tenant, task.agent)
        if agent is None:
            raise InvalidSignature(UNVERIFIED)
        if not verify(agent.secret, body, headers):
            raise InvalidSignature(UNVERIFIED)
        msg_id = headers.get("webhook-id", "")
        if len(msg_id) > MAX_MESSAGE_ID_CHARS:
            raise InvalidSignature(f"webhook-id is longer than {MAX_MESSAGE_ID_CHARS} characters")
        key = f"{task.id}:{msg_id}"
        if not await self._agents.remember(key):
            raise InvalidSignature(REPLAYED)
        return Verified(task, agent, key)

    async def events(self, verified: Verified, attempt: int, events: Sequence[NewEvent]) -> Task:
        """Append the attempt's events (none: a heartbeat) and extend its lease."""
        task = verified.task
        async with self._unconsumed_on_outage(verified):
            try:
                if events:
                    await self._store.append_events(task.id, attempt, events)
                elif not self._holds(task, attempt):
                    raise LeaseLost("")
            except LeaseLost:
                raise AttemptSuperseded(self._superseded(task, attempt)) from None
            lease_until = utcnow() + timedelta(seconds=self._settings.remote_lease_seconds)
            await self._agents.extend_lease(task.id, attempt, lease_until)
        return await self._store.get(task.id, tenant=EVERY_TENANT)

    async def finish(self, verified: Verified, attempt: int, outcome: Outcome, events: Sequence[NewEvent]) -> Task:
        """End the attempt as the remote agent reports: completed, failed (retried if it says so and the
        lifecycle allows), or cancelled."""
        task = verified.task
        used = {"input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens, "reused_tokens": 0}
        async with self._unconsumed_on_outage(verified):
            if outcome.status == "completed":
                moved = await self._store.complete(task.id, attempt, result=outcome.result, **used, events=events)
            elif outcome.status == "cancelled":
                moved = await self._store.finish_cancelled(task.id, attempt, **used, events=events)
            else:
                moved = await self._failed(task, attempt, outcome, used, events)
        if not moved:
            raise AttemptSuperseded(self._superseded(task, attempt))
        return await self._store.get(task.id, tenant=EVERY_TENANT)

    async def _failed(
        self, task: Task, attempt: int, outcome: Outcome, used: dict[str, int], events: Sequence[NewEvent]
    ) -> bool:
        message = redact_text(f"remote agent {task.agent!r}: {outcome.error_type}: {outcome.error_message}")
        error_type = ErrorType.AGENT_ERROR.value
        decision = self._store.policy.decide(attempt=attempt, max_retries=task.max_retries, retryable=outcome.retryable)
        if isinstance(decision, Retry):
            failed = NewEvent(
                EventType.ATTEMPT_FAILED.value,
                {"attempt": attempt, "type": error_type, "message": message, "retry_in_seconds": decision.delay},
            )
            # The relay publishes it when due (a requeue clears published_at).
            return await self._store.schedule_retry(
                task.id,
                attempt,
                error_type=error_type,
                error_message=message,
                run_after=utcnow() + timedelta(seconds=decision.delay),
                **used,
                events=[*events, failed],
            )
        error = NewEvent(EventType.ERROR.value, {"type": error_type, "message": message})
        return await self._store.fail(
            task.id, attempt, error_type=error_type, error_message=message, **used, events=[*events, error]
        )

    def _holds(self, task: Task, attempt: int) -> bool:
        return task.status is RUNNING and task.attempts == attempt

    @staticmethod
    def _superseded(task: Task, attempt: int) -> str:
        return f"attempt {attempt} of task {task.id} no longer owns it; the callback changed nothing"

    def _unconsumed_on_outage(self, verified: Verified) -> _Unconsumed:
        return _Unconsumed(self._agents, verified.key)


class _Unconsumed:
    """If the database fails mid-callback, the webhook-id is given back so the agent's retry is not a replay."""

    def __init__(self, agents: RemoteAgentStore, key: str) -> None:
        self._agents = agents
        self._key = key

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, DatabaseUnavailable):
            # If that fails too the id stays taken; the agent's retry with a new id goes through.
            with contextlib.suppress(DatabaseUnavailable):
                await self._agents.forget(self._key)
