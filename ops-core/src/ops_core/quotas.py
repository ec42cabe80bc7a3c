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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from ops_core.db.access import AccessStore, Quotas
from ops_core.db.rules import utcnow
from ops_core.db.store import TaskStore
from ops_core.errors import RateLimited, TokenBudgetSpent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    until: float


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
        self._seconds = cache_seconds
        self._clock = clock
        self._quotas: dict[str, _Entry[Quotas]] = {}
        self._spent: dict[str, _Entry[int]] = {}

    async def quotas(self, tenant: str) -> Quotas:
        entry = self._quotas.get(tenant)
        if entry is None or entry.until <= self._clock():
            entry = self._quotas[tenant] = _Entry(await self._access.quotas(tenant), self._clock() + self._seconds)
        return entry.value

    async def tokens_today(self, tenant: str) -> int:
        entry = self._spent.get(tenant)
        if entry is None or entry.until <= self._clock():
            usage = await self._store.usage(tenant=tenant, since=midnight(utcnow()))
            spent = sum(u.input_tokens + u.output_tokens for u in usage)
            entry = self._spent[tenant] = _Entry(spent, self._clock() + self._seconds)
        return entry.value

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
