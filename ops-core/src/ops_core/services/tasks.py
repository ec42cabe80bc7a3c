"""Submitting, cancelling and retrying tasks: the API's side of the state machine.

A submit is one statement (the insert) plus one confirmed publish; marking the
task published is batched off the request path (see :mod:`ops_core.services.publish_marks`).

An idempotency key names one request: repeating it returns the first task,
but reusing the key for a different request is refused (409), as payment APIs
do, instead of silently answering with a task the client did not ask for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from agentkit.errors import UnknownProviderError
from agentkit.models import parse_model_string
from agentkit.registry import AgentRegistry
from ops_core import callback_urls, tracing
from ops_core.config import Settings, matches_any
from ops_core.db.access import Quotas
from ops_core.db.models import NewTask, Task
from ops_core.db.remote import RemoteAgentStore
from ops_core.db.sessions import SessionStore, session_key
from ops_core.db.store import TaskStore
from ops_core.errors import (
    BrokerUnavailable,
    ConfigError,
    IdempotencyConflict,
    InvalidModel,
    InvalidRequest,
    ModelNotAllowed,
    OpsCoreError,
    SessionMoved,
    UnknownAgent,
)
from ops_core.lifecycle import TaskStatus
from ops_core.queue.publisher import Publisher
from ops_core.quotas import QuotaCache
from ops_core.services.publish_marks import PublishMarks
from ops_core.tenancy import TenantScope

log = logging.getLogger(__name__)

# One item of a batch: (task, created), or why it was refused (None only while being decided).
Submitted = tuple[Task, bool] | OpsCoreError | None


class TaskDefaults:
    """What a task leaves unset, filled in from the server's settings and the agent: the one home of these
    defaults, for a submit (:class:`TaskService`) and a schedule's tick alike."""

    def __init__(self, registry: AgentRegistry, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings

    def default_model(self, agent: str, model: str | None) -> str:
        """The model asked for, else the local agent's, else the server's (unchecked)."""
        agent_model = self._registry.get(agent).model if agent in self._registry else None
        return model or agent_model or self._settings.default_model

    def new_task(
        self,
        *,
        tenant: str,
        agent: str,
        goal: str,
        model: str,
        input: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        priority: int = 0,
        schedule_to_start_seconds: int | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        session_id: UUID | None = None,
        callback_url: str | None = None,
        run_after: datetime | None = None,
    ) -> NewTask:
        """The task a submit asks for, with the server's defaults filled in (``model`` already resolved)."""
        return NewTask(
            tenant=tenant,
            agent=agent,
            goal=goal,
            input=input or {},
            model=model,
            idempotency_key=idempotency_key,
            max_retries=self._settings.default_max_retries if max_retries is None else max_retries,
            timeout_seconds=timeout_seconds or self._settings.default_timeout_seconds,
            priority=priority,
            schedule_to_start_seconds=schedule_to_start_seconds,
            concurrency_key=concurrency_key,
            # One at a time unless the caller says otherwise; a limit without a key means nothing.
            concurrency_limit=None if concurrency_key is None else concurrency_limit or 1,
            session_id=session_id,
            callback_url=callback_url,
            run_after=run_after,
        )


class TaskService(TaskDefaults):
    def __init__(
        self,
        store: TaskStore,
        quotas: QuotaCache,
        publisher: Publisher,
        registry: AgentRegistry,
        settings: Settings,
        *,
        remote_agents: RemoteAgentStore | None = None,
    ) -> None:
        super().__init__(registry, settings)
        self._store = store
        self._remote_agents = remote_agents
        self._quotas = quotas
        self._publisher = publisher
        for name in registry.names():
            agent_model = registry.get(name).model
            if agent_model is not None and not _allowed(settings, agent_model):
                raise ConfigError(
                    f"agent {name!r} runs on {agent_model!r}, which OPSCORE_ALLOWED_MODELS does not allow"
                )
        self.publish_marks = PublishMarks(store.mark_published)
        self._sessions = SessionStore(store.engine)
        self._allowed_callback_hosts = callback_urls.allowed_hosts(settings.webhook_allowed_hosts)

    async def close(self) -> None:
        """Write the publish marks still buffered; call before the engine is disposed."""
        await self.publish_marks.close()

    async def submit(
        self,
        *,
        tenant: str,
        goal: str,
        agent: str | None = None,
        input: dict[str, Any] | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        priority: int = 0,
        schedule_to_start_seconds: int | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        session_id: UUID | None = None,
        callback_url: str | None = None,
        run_after: datetime | None = None,
    ) -> tuple[Task, bool]:
        """Store a new task and publish it. Returns ``(task, created)``.

        The row is committed before the message is sent, so a failed publish
        leaves a pending, unpublished task that the relay publishes later:
        an accepted task is never lost. A task with ``run_after`` in the future
        is only stored: the relay publishes it once due. ``agent`` None: the session's agent,
        or ``default``. A task of a session takes the session's key (db/sessions.py).
        """
        if session_id is not None:
            agent, concurrency_key, concurrency_limit = await self._joining(
                session_id, tenant=tenant, agent=agent, concurrency_key=concurrency_key, idempotency_key=idempotency_key
            )
        agent = agent or "default"
        traced = tracing.active()
        submission = traced.submission(agent, self._settings.queue_name) if traced is not None else None
        resolved_model = await self.resolve_model_for(tenant, agent, model)
        if callback_url is not None:
            # Before the quota takes a token: a refused URL costs the tenant nothing.
            await self.check_callback_url(callback_url)
        self.check_tenant_model(await self.admit(tenant), tenant, resolved_model)
        new = self.new_task(
            tenant=tenant,
            agent=agent,
            goal=goal,
            input=input,
            model=resolved_model,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            priority=priority,
            schedule_to_start_seconds=schedule_to_start_seconds,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            session_id=session_id,
            callback_url=callback_url,
            run_after=run_after,
        )
        task, created = await self._store.create(new)
        if created:
            # A delayed task stays in the database until due; the relay publishes it then.
            if task.run_after is None:
                await self.publish(task)
            if submission is not None:
                submission.end(task.id)
        else:
            _check_same_request(task, new)
        return task, created

    async def _joining(
        self,
        session_id: UUID,
        *,
        tenant: str,
        agent: str | None,
        concurrency_key: str | None,
        idempotency_key: str | None,
    ) -> tuple[str, str, int]:
        """The agent, key and limit of a task joining the session; refused if the session is closed
        or the task names another agent or a key of its own."""
        session = await self._sessions.open_session(session_id, tenant=tenant, idempotency_key=idempotency_key)
        if agent is not None and agent != session.agent:
            raise InvalidRequest(
                f"session {session_id} talks to agent {session.agent!r}, not {agent!r}; omit agent to use the session's"
            )
        if concurrency_key is not None:
            raise InvalidRequest(
                "a session's tasks already run one at a time in submission order; concurrency_key cannot be"
                " combined with session_id"
            )
        return session.agent, session_key(session_id), 1

    async def check_callback_url(self, url: str) -> None:
        """422 unless ``url`` may receive webhooks (see :mod:`ops_core.callback_urls`)."""
        await callback_urls.check(url, self._allowed_callback_hosts)

    async def resolve_model_for(self, tenant: str, agent: str, model: str | None) -> str:
        """:meth:`resolve_model`, where ``agent`` may also be one of the tenant's remote agents."""
        if agent in self._registry or self._remote_agents is None:
            return self.resolve_model(agent, model)
        # Only a name the registry lacks costs a read: the tenant's remote agents.
        remote = await self._remote_agents.get(tenant, agent)
        if remote is None:
            raise UnknownAgent(
                f"unknown agent {agent!r}; known agents: {self._known()} (and the tenant's remote agents)"
            )
        return self._checked(model or remote.model or self._settings.default_model)

    def resolve_model(self, agent: str, model: str | None) -> str:
        """The model a task of the local ``agent`` runs on (asked for, else the agent's, else the server's),
        checked against the server's allow-list; UnknownAgent, InvalidModel or ModelNotAllowed otherwise."""
        if agent not in self._registry:
            raise UnknownAgent(f"unknown agent {agent!r}; known agents: {self._known()}")
        return self._checked(self.default_model(agent, model))

    def _known(self) -> str:
        return ", ".join(sorted(self._registry.names()))

    def _checked(self, resolved_model: str) -> str:
        try:
            allowed = _allowed(self._settings, resolved_model)
        except UnknownProviderError as exc:
            raise InvalidModel(str(exc)) from None
        if not allowed:
            raise ModelNotAllowed(f"model {resolved_model!r} is not allowed on this server")
        return resolved_model

    async def admit(self, tenant: str) -> Quotas:
        """Count one submission against the tenant's rate; the tenant's quotas."""
        return await self._quotas.admit_submission(tenant)

    @staticmethod
    def check_tenant_model(quotas: Quotas, tenant: str, model: str) -> None:
        """ModelNotAllowed unless the tenant's own model list (if it has one) allows ``model``."""
        if quotas.allowed_models is not None and not matches_any(model, quotas.allowed_models):
            raise ModelNotAllowed(f"model {model!r} is not allowed for tenant {tenant!r}")

    async def submit_many(
        self, tenant: str, items: Sequence[NewTask | OpsCoreError], *, publish: bool = True
    ) -> list[Submitted]:
        """Store many tasks (built by :meth:`new_task`) in one transaction, then publish the new ones
        (unless ``publish`` is False: the caller then calls :meth:`publish_all` with them).

        ``items`` may already hold refusals (an item that failed validation);
        they are answered as they are. Every other item counts against the
        tenant's submission rate; those beyond it are refused with
        :class:`RateLimited` and the rest go on. A reused idempotency key with a
        different request is refused for its item only.
        """
        answers: list[Submitted] = [item if isinstance(item, OpsCoreError) else None for item in items]
        wanted = [i for i, item in enumerate(items) if not isinstance(item, OpsCoreError)]
        quotas, admitted, refused = await self._quotas.admit_submissions(tenant, len(wanted))
        news: list[tuple[int, NewTask]] = []
        for position, i in enumerate(wanted):
            new = items[i]
            assert not isinstance(new, OpsCoreError)
            if position >= admitted:
                assert refused is not None
                answers[i] = refused
                continue
            try:
                self.check_tenant_model(quotas, tenant, new.model)
            except ModelNotAllowed as exc:
                answers[i] = exc
                continue
            news.append((i, new))
        stored = await self._store.create_many(tenant, [new for _, new in news]) if news else []
        created: list[Task] = []
        for (i, new), (task, is_new) in zip(news, stored, strict=True):
            if is_new:
                created.append(task)
                answers[i] = (task, True)
                continue
            try:
                _check_same_request(task, new)
            except IdempotencyConflict as exc:
                answers[i] = exc
                continue
            answers[i] = (task, False)
        if publish:
            await self.publish_all(created)
        assert all(answer is not None for answer in answers)
        return answers

    async def publish_all(self, tasks: Sequence[Task]) -> None:
        """Publish committed tasks side by side (the publisher's threads each wait for a confirm); a delayed
        task waits for the relay. A publish that fails, or never happens because the process died first,
        leaves its task unpublished in the database, where the relay finds it."""
        await asyncio.gather(*(self.publish(task) for task in tasks if task.run_after is None))

    async def cancel(self, task_id: UUID, *, tenant: TenantScope) -> Task:
        return await self._store.request_cancel(task_id, tenant=tenant)

    async def retry(self, task_id: UUID, *, tenant: TenantScope) -> Task:
        current = await self._store.get(task_id, tenant=tenant)
        if current.session_id is not None and await self._sessions.has_later_task(current):
            # Its turn would land before answers that were given without it: the conversation moved on.
            raise SessionMoved(
                f"task {task_id} is a turn of session {current.session_id}, which has later tasks;"
                " submit the goal again as a new turn instead"
            )
        task = await self._store.retry(task_id, tenant=tenant)
        traced = tracing.active()
        if traced is not None:
            traced.retried(task.id, task.agent)
        await self.publish(task)
        return task

    async def publish(self, task: Task) -> bool:
        """Publish ``task`` if it is still pending; report whether the broker took it."""
        if task.status != TaskStatus.PENDING:
            return False
        try:
            await self._publisher.publish(task.id, priority=task.priority)
        except BrokerUnavailable as exc:
            log.warning("task %s stored but not yet published (the relay will retry): %s", task.id, exc)
            return False
        self.publish_marks.add(task.id)
        return True


def _allowed(settings: Settings, model: str) -> bool:
    parse_model_string(model)  # an unknown provider raises before any pattern is matched
    return settings.allows_model(model)


# What a submit asked for, as stored: the fields two requests with one idempotency key must agree on.
_REQUEST_FIELDS = (
    "agent",
    "goal",
    "input",
    "model",
    "max_retries",
    "timeout_seconds",
    "priority",
    "concurrency_key",
    "concurrency_limit",
    "session_id",
    "callback_url",
)


def _check_same_request(existing: Task, new: NewTask) -> None:
    """Raise :class:`IdempotencyConflict` unless ``new`` repeats the request that created ``existing``."""
    stored = {name: getattr(existing, name) for name in _REQUEST_FIELDS}
    # A manual retry raises the stored limit; the request carried the configured one.
    stored["max_retries"] = existing.configured_max_retries
    stored["schedule_to_start_seconds"] = existing.schedule_to_start_seconds
    asked = {name: getattr(new, name) for name in stored}
    differing = sorted(name for name in stored if not _same_json(stored[name], asked[name]))
    if differing:
        raise IdempotencyConflict(
            f"idempotency_key {new.idempotency_key!r} was used for task {existing.id} with a different request"
            f" (differs in: {', '.join(differing)}); use a new key for a new request"
        )


def _same_json(stored: object, asked: object) -> bool:
    """Equal as JSON values: 1 and 1.0 are one number (the database may store either), true is not 1."""
    if isinstance(stored, bool) or isinstance(asked, bool):
        return stored is asked
    if isinstance(stored, dict) and isinstance(asked, dict):
        return stored.keys() == asked.keys() and all(_same_json(stored[key], asked[key]) for key in stored)
    if isinstance(stored, list) and isinstance(asked, list):
        return len(stored) == len(asked) and all(_same_json(a, b) for a, b in zip(stored, asked, strict=True))
    return stored == asked
