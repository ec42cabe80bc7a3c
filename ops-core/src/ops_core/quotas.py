"""Tenants' quotas as the API and the workers check them, each read at most once per cache period.

The submission rate is counted in the database (see ``AccessStore.take_submission``)
so it holds across API instances. Tokens are charged to the UTC day a task was
submitted on: the daily budget compares the tokens of the tenant's tasks
submitted today (``TaskStore.usage``) with the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ops_core.db.access import AccessStore, Quotas
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.errors import RateLimited, TokenBudgetSpent
from ops_core.ttl import TtlCache


class QuotaCache:
    def __init__(
        self,
        access: AccessStore,
        store: TaskStore,
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._access = access
        self._store = store
        self._quotas: TtlCache[str, Quotas] = TtlCache(cache_seconds, clock=clock)
        self._spent: TtlCache[str, int] = TtlCache(cache_seconds, clock=clock)

    async def quotas(self, tenant: str) -> Quotas:
        return await self._quotas.get(tenant, self._access.quotas)

    async def tokens_today(self, tenant: str) -> int:
        return await self._spent.get(tenant, self._tokens_today)

    async def _tokens_today(self, tenant: str) -> int:
        usage = await self._store.usage(tenant=tenant, since=midnight(utcnow()))
        return sum(u.input_tokens + u.output_tokens for u in usage)

    async def budget_spent(self, tenant: str) -> bool:
        """Whether the tenant's daily token budget (if any) is used up."""
        budget = (await self.quotas(tenant)).daily_token_budget
        return budget is not None and await self.tokens_today(tenant) >= budget

    async def admit_submission(self, tenant: str) -> Quotas:
        """The tenant's quotas, if it may submit now; else :class:`RateLimited` or :class:`TokenBudgetSpent`."""
        quotas = await self.quotas(tenant)
        if not quotas.limits_submissions:
            return quotas
        now = utcnow()
        if quotas.daily_token_budget is not None and await self.budget_spent(tenant):
            resets = (midnight(now) + timedelta(days=1) - now).total_seconds()
            raise TokenBudgetSpent(
                f"tenant {tenant!r} has spent its daily budget of {quotas.daily_token_budget} tokens;"
                " it renews at 00:00 UTC",
                retry_after=resets,
            )
        if quotas.submissions_per_second is not None:
            rate = quotas.submissions_per_second
            wait = await self._access.take_submission(tenant, rate, burst=max(1, math.ceil(rate)), now=now)
            if wait > 0:
                raise RateLimited(
                    f"tenant {tenant!r} may submit {rate:g} tasks per second; retry after {wait:.2f}s",
                    retry_after=wait,
                )
        return quotas


def midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
