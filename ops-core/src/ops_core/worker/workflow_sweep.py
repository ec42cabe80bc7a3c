"""Advances the workflows a step's end left behind: the repair path of exactly-once step starts.

The worker that ran a step advances its workflow as soon as the step's task
ends (``Execution.run``). Everything else that ends a task (the reaper's
timeouts and orphans out of retries, a schedule-to-start deadline, a cancel
through the API), and a worker that died between a step's end and the
advance, leaves a started step whose task has ended: this duty finds those
(``WorkflowStore.due``, one indexed read) and advances their workflows. Any
number of workers may sweep at once: each advance takes the workflow's row,
so a step is started once.
"""

from __future__ import annotations

import logging

from ops_core.errors import OpsCoreError
from ops_core.services.workflows import WorkflowService

log = logging.getLogger(__name__)


class WorkflowSweep:
    def __init__(self, workflows: WorkflowService) -> None:
        self._workflows = workflows

    async def __call__(self) -> None:
        for workflow_id in await self._workflows.due():
            try:
                await self._workflows.advance(workflow_id)
            except OpsCoreError as exc:
                log.warning("workflow %s: could not advance (%s); the next sweep tries again", workflow_id, exc)
