"""Builds the long-lived objects one process needs, from settings, and closes them.

Nothing here runs at import time: the API's lifespan, a worker process and the
embedded ``dev`` command each call these factories on their own event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkit.registry import AgentRegistry
from ops_core.agents import load_agents
from ops_core.api.workflow_schemas import render_workflow
from ops_core.config import Settings
from ops_core.db.access import AccessStore
from ops_core.db.approvals import ApprovalStore
from ops_core.db.backend import open_store
from ops_core.db.engine import create_engine
from ops_core.db.remote import RemoteAgentStore
from ops_core.db.schedules import ScheduleStore
from ops_core.db.store import TaskStore
from ops_core.db.webhooks import WebhookStore
from ops_core.db.workflows import EndWebhooks, WorkflowStore
from ops_core.lifecycle import RetryPolicy
from ops_core.live import LiveBus, open_bus
from ops_core.queue.broker import setup_broker
from ops_core.queue.publisher import Publisher
from ops_core.quotas import QuotaCache
from ops_core.services.approvals import ApprovalService
from ops_core.services.schedules import ScheduleService
from ops_core.services.tasks import TaskService
from ops_core.services.workflows import WorkflowService


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    store: TaskStore
    access: AccessStore
    quotas: QuotaCache
    broker: dramatiq.Broker
    publisher: Publisher
    registry: AgentRegistry
    tasks: TaskService
    approvals: ApprovalStore
    approval_service: ApprovalService
    live: LiveBus
    webhooks: WebhookStore
    schedules: ScheduleService
    workflows: WorkflowService
    remote_agents: RemoteAgentStore

    @classmethod
    def open(cls, settings: Settings, *, broker: dramatiq.Broker | None = None, live: LiveBus | None = None) -> Runtime:
        """Build a runtime; pass ``broker`` (and ``live``) to share an in-process broker (and live-text bus)
        between an API and a worker in one process."""
        engine = create_engine(settings)
        store = open_store(engine, policy=RetryPolicy.from_settings(settings))
        broker = broker or setup_broker(settings)
        publisher = Publisher(broker, settings.queue_name)
        access = AccessStore(engine)
        quotas = QuotaCache(access, store, cache_seconds=settings.auth_cache_seconds)
        registry = load_agents(settings)
        remote_agents = RemoteAgentStore(engine)
        tasks = TaskService(store, quotas, publisher, registry, settings, remote_agents=remote_agents)
        approvals = ApprovalStore(engine)
        webhooks = WebhookStore.from_settings(engine, settings)
        workflows = WorkflowService(
            WorkflowStore(engine, webhooks=EndWebhooks(webhooks, render_workflow)), store, tasks
        )
        return cls(
            settings=settings,
            engine=engine,
            store=store,
            access=access,
            quotas=quotas,
            broker=broker,
            publisher=publisher,
            registry=registry,
            tasks=tasks,
            approvals=approvals,
            approval_service=ApprovalService(approvals, store, tasks, registry),
            live=live or open_bus(engine),
            webhooks=webhooks,
            schedules=ScheduleService(ScheduleStore(engine), tasks, quotas, workflows),
            workflows=workflows,
            remote_agents=remote_agents,
        )

    async def close(self) -> None:
        # Publish marks are flushed through the engine, so they go before it.
        await self.tasks.close()
        await self.publisher.close()
        await self.engine.dispose()
