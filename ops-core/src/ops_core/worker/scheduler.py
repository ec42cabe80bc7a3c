"""The schedule ticker: a worker's periodic duty that fires the cron schedules that are due.

Every worker process runs one, every ``OPSCORE_SCHEDULE_INTERVAL_SECONDS``;
they need no leader. Each reads the due schedules, plans each one's ticks
(:func:`ops_core.schedule_rules.plan`: on-time ticks, and the catch-up policy
for missed ones) and fires them through :meth:`ScheduleStore.fire`, where a
conditional UPDATE lets exactly one ticker handle each tick. The tasks created
are then published like a submit's; a publish that fails is left to the relay.
Then it starts the workflows that fired ticks owe (those of this pass, and any a
crashed ticker left): :func:`~ops_core.services.schedules.start_owed_workflows`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from agentkit.registry import AgentRegistry
from ops_core.config import Settings
from ops_core.db.rules import utcnow
from ops_core.db.schedules import Schedule, ScheduleStore
from ops_core.db.store import TaskStore
from ops_core.queue.publisher import Publisher
from ops_core.schedule_rules import CatchUp, Cron, InvalidSchedule, plan
from ops_core.services.schedules import start_owed_workflows, tick_builder
from ops_core.services.workflows import WorkflowService

log = logging.getLogger(__name__)


class ScheduleTicker:
    def __init__(
        self,
        schedules: ScheduleStore,
        tasks: TaskStore,
        publisher: Publisher,
        registry: AgentRegistry,
        settings: Settings,
        *,
        workflows: WorkflowService | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._schedules = schedules
        # None: workflow ticks stay owed until a ticker that has one starts them (tests of tasks alone).
        self._workflows = workflows
        self._tasks = tasks
        self._publisher = publisher
        self._settings = settings
        self._clock = clock
        self._build = tick_builder(schedules, settings=settings, registry=registry)

    async def __call__(self) -> None:
        await self.tick()

    async def tick(self) -> list[UUID]:
        """One pass: fire what is due; the ids of the tasks this ticker created."""
        now = self._clock()
        created: list[tuple[UUID, int]] = []
        for schedule in await self._schedules.due(now):
            priority = int(schedule.template.get("priority") or 0)
            created += [(task_id, priority) for task_id in await self._fire(schedule, now)]
        if created:
            await self._publish(created)
        if self._workflows is not None:
            await start_owed_workflows(self._schedules, self._workflows)
        return [task_id for task_id, _ in created]

    async def _fire(self, schedule: Schedule, now: datetime) -> list[UUID]:
        try:
            cron = Cron(schedule.cron, schedule.timezone)
            decided = plan(
                cron,
                schedule.next_run_at,
                now,
                catch_up=CatchUp(schedule.catch_up),
                grace_seconds=self._settings.schedule_misfire_grace_seconds,
            )
        except (InvalidSchedule, ValueError) as exc:
            # Validated at creation; only a time zone removed from the system's database gets here.
            log.error("schedule %s cannot be planned: %s", schedule.id, exc)
            return []
        fired = await self._schedules.fire(
            schedule, ticks=decided.fire, next_run_at=decided.next_run_at, skipped=decided.skipped, build=self._build
        )
        if fired is None:
            return []  # another ticker handled these ticks
        if decided.skipped:
            log.warning(
                "schedule %s: skipped %d missed tick(s) (catch_up=%s)", schedule.id, decided.skipped, schedule.catch_up
            )
        return fired

    async def _publish(self, tasks: list[tuple[UUID, int]]) -> None:
        published: list[UUID] = []
        for task_id, priority in tasks:
            try:
                await self._publisher.publish(task_id, priority=priority)
            except Exception as exc:
                log.warning("schedule ticker: task %s stored, not yet published (the relay will): %s", task_id, exc)
                break
            published.append(task_id)
        if published:
            await self._tasks.mark_published(published)
