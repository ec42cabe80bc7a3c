"""Sessions: starting, reading, listing and closing conversations (their tasks go through TaskService)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agentkit.registry import AgentRegistry
from ops_core.db.sessions import Session, SessionPage, SessionStore, Turns
from ops_core.domain import SessionStatus
from ops_core.errors import UnknownAgent
from ops_core.tenancy import TenantScope


class SessionService:
    def __init__(self, store: SessionStore, registry: AgentRegistry) -> None:
        self._store = store
        self._registry = registry

    async def create(self, *, tenant: str, agent: str, metadata: dict[str, Any] | None = None) -> Session:
        if agent not in self._registry:
            known = ", ".join(sorted(self._registry.names()))
            raise UnknownAgent(f"unknown agent {agent!r}; known agents: {known}")
        return await self._store.create(tenant=tenant, agent=agent, metadata=metadata or {})

    async def get(self, session_id: UUID, *, tenant: TenantScope, turns: int) -> tuple[Session, Turns]:
        session = await self._store.get(session_id, tenant=tenant)
        return session, await self._store.turns(session_id, tenant=tenant, limit=turns)

    async def list(
        self,
        *,
        tenant: TenantScope,
        status: SessionStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        return await self._store.list(tenant=tenant, status=status, agent=agent, limit=limit, cursor=cursor)

    async def close(self, session_id: UUID, *, tenant: TenantScope) -> Session:
        return await self._store.close(session_id, tenant=tenant)
