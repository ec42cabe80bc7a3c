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
from ops_core.errors import RateLimited, TokenBudgetSpent, TooManyRequests
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
        quotas, _, refused = await self.admit_submissions(tenant, 1)
        if refused is not None:
            raise refused
        return quotas

    async def admit_submissions(self, tenant: str, count: int) -> tuple[Quotas, int, TooManyRequests | None]:
        """How many of ``count`` submissions the tenant may make now (a batch of N counts as N), and why
        not the rest: ``(quotas, admitted, error)``, the error None when all are admitted."""
        quotas = await self.quotas(tenant)
        if not quotas.limits_submissions or count == 0:
            return quotas, count, None
        now = utcnow()
        if quotas.daily_token_budget is not None and await self.budget_spent(tenant):
            resets = (midnight(now) + timedelta(days=1) - now).total_seconds()
            spent = TokenBudgetSpent(
                f"tenant {tenant!r} has spent its daily budget of {quotas.daily_token_budget} tokens;"
                " it renews at 00:00 UTC",
                retry_after=resets,
            )
            return quotas, 0, spent
        if quotas.submissions_per_second is None:
            return quotas, count, None
        rate = quotas.submissions_per_second
        taken, wait = await self._access.take_submissions(tenant, rate, max(1, math.ceil(rate)), count, now)
        if taken == count:
            return quotas, count, None
        limited = RateLimited(
            f"tenant {tenant!r} may submit {rate:g} tasks per second; retry after {wait:.2f}s", retry_after=wait
        )
        return quotas, taken, limited


def midnight(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
