"""Runs one claimed attempt of a task to its end: completed, failed, cancelled, or back to pending.

Every write after the claim is fenced by the attempt number, so if this worker
was presumed dead and the task moved on, the store raises ``LeaseLost`` and
this attempt stops without touching the task again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from agentkit import (
    DEFER,
    Agent,
    Approval,
    Checkpoint,
    Deferred,
    RunEvent,
    RunFailure,
    RunHooks,
    RunSuccess,
    RunSuspended,
)
from agentkit.errors import ModelFailed, ModelRateLimitError, RunCancelled, RunError, UserError
from agentkit.events import RunEventType
from agentkit.mcp import McpSessions
from agentkit.messages import AssistantMessage, Message, ToolCall, Usage
from agentkit.policy import PolicyDecision
from agentkit.registry import AgentRegistry
from ops_core.config import Settings
from ops_core.db.approvals import Approval as Asked
from ops_core.db.approvals import ApprovalStore, NewApproval
from ops_core.db.models import Claim, Task
from ops_core.db.store import TaskStore
from ops_core.domain import ApprovalStatus, ErrorType, EventType
from ops_core.errors import DatabaseUnavailable, LeaseLost
from ops_core.lifecycle import Decision, Retry, RetryPolicy
from ops_core.live import LiveBuffer
from ops_core.quotas import QuotaCache
from ops_core.redact import redact_text
from ops_core.worker.metrics import WorkerMetrics
from ops_core.worker.models import ModelCache
from ops_core.worker.recorder import EventRecorder, jsonable
from ops_core.worker.remote import RemoteAgents, RemoteDeliveryFailed
from ops_core.worker.sessions import conversation, conversing
from ops_core.worker.telemetry import RunTelemetry

if TYPE_CHECKING:
    from ops_core.services.workflows import WorkflowService
    from ops_core.task_traces import TaskTracing

log = logging.getLogger(__name__)

Republish = Callable[[Task, float], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class ExecutionContext:
    """What every execution in a worker process shares."""

    store: TaskStore
    registry: AgentRegistry
    models: ModelCache
    settings: Settings
    republish: Republish
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    # None: no tenant quotas are checked (tests of the executor alone).
    quotas: QuotaCache | None = None
    # None: no approver; a call the policy wants approved is denied, as agentkit does without one.
    approvals: ApprovalStore | None = None
    # None: a streaming model's text is not sent live (tests of the executor alone).
    live: LiveBuffer | None = None
    # None: this process keeps no worker metrics (its pool serves none) / traces nothing (OTEL_* unset).
    metrics: WorkerMetrics | None = None
    tracing: TaskTracing | None = None
    # The process's MCP connections, one per server, shared by its runs; None: each run opens its own.
    mcp: McpSessions | None = None
    # None: a workflow step's end waits for the sweep to advance its workflow (tests of the executor alone).
    workflows: WorkflowService | None = None
    # None: only local agents run here (tests of the executor alone).
    remote: RemoteAgents | None = None


def decide(attempt: int, max_retries: int, policy: RetryPolicy, error: RunError) -> Decision:
    """The lifecycle's decision for a failed run: a provider's Retry-After is a floor for the delay."""
    retry_after = None
    if isinstance(error, ModelFailed) and isinstance(error.cause, ModelRateLimitError):
        retry_after = error.cause.retry_after
    return policy.decide(attempt=attempt, max_retries=max_retries, retryable=error.retryable, retry_after=retry_after)


class Execution:
    def __init__(self, ctx: ExecutionContext, claim: Claim, cancelled: asyncio.Event) -> None:
        self._ctx = ctx
        self._task = claim.task
        self._attempt = claim.attempt
        self._cancelled = cancelled
        # A cancel requested before the claim must still stop the run.
        if claim.task.cancel_requested:
            cancelled.set()
        self.recorder = EventRecorder(ctx.store, claim.task.id, claim.attempt)
        self._telemetry = (
            RunTelemetry(claim, ctx.settings.queue_name, ctx.metrics, ctx.tracing)
            if ctx.metrics is not None or ctx.tracing is not None
            else None
        )
        self._resume = Checkpoint.model_validate(claim.task.checkpoint) if claim.task.checkpoint else None
        # A checkpoint's usage is cumulative over every attempt; the store adds deltas. ``_saved`` is
        # what the task row already holds for this run, so each write adds only what is new.
        self._saved = self._resume.usage if self._resume else Usage()
        self._baseline = self._saved
        self._started = 0.0
        self._over_budget = False
        # The decisions recorded for the calls the resumed checkpoint waits on; None once that step is done.
        self._decisions: dict[str, Asked] | None = None
        # The step whose model call is under way: live text belongs to it.
        self._step = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def cancelled_event(self) -> asyncio.Event:
        return self._cancelled

    def _fields(self, **more: Any) -> dict[str, Any]:
        """Structured fields of this run's log lines (``extra=``), for a JSON log formatter."""
        return {"task_id": str(self._task.id), "attempt": self._attempt, "agent": self._task.agent, **more}

    async def run(self) -> None:
        self._started = time.monotonic()
        log.info(
            "task %s: attempt %d started (agent %s, model %s)",
            self._task.id,
            self._attempt,
            self._task.agent,
            self._task.model,
            extra=self._fields(model=self._task.model),
        )
        telemetry = self._telemetry
        if telemetry is not None:
            telemetry.started()
        interrupted = False
        try:
            await self._run()
        except LeaseLost:
            log.warning(
                "task %s attempt %s: lease lost; another worker owns it now",
                self._task.id,
                self._attempt,
                extra=self._fields(),
            )
        except asyncio.CancelledError:
            interrupted = True  # shutdown: the runner hands the task back
            raise
        finally:
            if telemetry is not None:
                telemetry.closed(interrupted)
        if self._task.workflow_id is not None:
            await self._advance_workflow(self._task.workflow_id)

    async def _advance_workflow(self, workflow_id: UUID) -> None:
        """A step ended (or went back to pending): start what it unblocks now, not at the next sweep."""
        workflows = self._ctx.workflows
        if workflows is None:
            return
        try:
            await workflows.advance(workflow_id)
        except Exception as exc:
            # The sweep finds the step's ended task and advances the workflow then.
            log.warning("task %s: could not advance workflow %s (%s)", self._task.id, workflow_id, exc)

    def _log_end(self, status: str, used: Usage, detail: str = "", *, outcome: str = "", **more: Any) -> None:
        """The run's last line; ``status`` is the task's status after it, ``outcome`` words it if that is not enough."""
        duration = time.monotonic() - self._started
        if self._telemetry is not None:
            self._telemetry.finished(status, more.get("error_type"))
        log.info(
            "task %s: attempt %d %s%s in %.2fs (%d input + %d output tokens)",
            self._task.id,
            self._attempt,
            outcome or status,
            detail,
            duration,
            used.input_tokens,
            used.output_tokens,
            extra=self._fields(
                status=status,
                duration_seconds=round(duration, 3),
                input_tokens=used.input_tokens,
                output_tokens=used.output_tokens,
                **more,
            ),
        )

    async def _run(self) -> None:
        task = self._task
        if self._ctx.remote is not None and task.agent not in self._ctx.registry:
            await self._run_remote(self._ctx.remote)
            return
        try:
            agent = Agent(
                self._ctx.registry.get(task.agent), model=await self._ctx.models.get(task.model), mcp=self._ctx.mcp
            )
        except UserError as exc:
            await self._fail(ErrorType.AGENT_ERROR, str(exc), Usage(), Usage())
            return
        if self._ctx.approvals is not None and self._resume is not None and self._resume.pending_approvals:
            step = self._resume.steps_completed + 1
            self._decisions = await self._write(lambda: self._approvals.decisions(task.id, step))
        hooks = RunHooks(
            # Straight to the recorder when nothing else watches the run: one call less per event.
            on_event=self._on_event
            if self._ctx.live is not None or self._telemetry is not None
            else self.recorder.on_run_event,
            cancelled=self._cancelled,
            on_checkpoint=self._save_checkpoint,
            on_delta=self._delta if self._ctx.live is not None else None,
            approve=self._approve if self._ctx.approvals is not None else None,
        )
        history: list[Message] = []
        if task.session_id is not None and self._resume is None:
            # A resumed run's checkpoint already holds the history it started with.
            agent = conversing(agent, self._ctx.settings.session_memory_tokens)
            history = await self._write(lambda: conversation(self._ctx.store.engine, task))
        try:
            async with asyncio.timeout(task.timeout_seconds):
                outcome = await agent.run(
                    task.goal, input=task.input, hooks=hooks, resume=self._resume, run_id=str(task.id), history=history
                )
        except TimeoutError:
            message = f"the task ran longer than its timeout_seconds={task.timeout_seconds}"
            await self._fail(ErrorType.TIMEOUT, message, Usage(), Usage())
            return
        match outcome:
            case RunSuccess():
                await self._complete(outcome)
            case RunSuspended():
                await self._suspend(outcome, agent.definition.policy.approval_timeout)
            case RunFailure(error=RunCancelled()) if self._over_budget:
                message = f"tenant {task.tenant!r} spent its daily token budget; the run stopped after its last step"
                await self._fail(ErrorType.QUOTA_EXCEEDED, message, outcome.usage, outcome.reused_usage)
            case RunFailure(error=RunCancelled()):
                if await self._finish(
                    lambda events, used, reused: self._ctx.store.finish_cancelled(
                        task.id, self._attempt, **self._usage_kwargs(used, reused), events=events
                    ),
                    outcome.usage,
                    outcome.reused_usage,
                ):
                    self._log_end("cancelled", outcome.usage)
            case RunFailure(error=error):
                decision = decide(self._attempt, task.max_retries, self._ctx.policy, error)
                if isinstance(decision, Retry):
                    await self._schedule_retry(error, decision.delay, outcome.usage, outcome.reused_usage)
                else:
                    await self._fail(error.kind, str(error), outcome.usage, outcome.reused_usage)

    async def _run_remote(self, remote: RemoteAgents) -> None:
        """Deliver the attempt to the tenant's remote agent of that name (see worker/remote.py)."""
        task = self._task
        try:
            delivered = await remote.deliver(task, self._attempt)
        except RemoteDeliveryFailed as error:
            decision = decide(self._attempt, task.max_retries, self._ctx.policy, error)
            if isinstance(decision, Retry):
                await self._schedule_retry(error, decision.delay, Usage(), Usage())
            else:
                await self._fail(error.kind, str(error), Usage(), Usage())
            return
        if not delivered:
            message = f"unknown agent {task.agent!r}: neither OPSCORE_AGENTS nor the tenant's remote agents define it"
            await self._fail(ErrorType.AGENT_ERROR, message, Usage(), Usage())
        elif self._telemetry is not None:
            # This worker's part ends here; the run goes on at the remote agent.
            self._telemetry.finished("delivered", None)

    async def _on_event(self, event: RunEvent) -> None:
        """Records the event, and feeds what watches the run: live text's step, traces and metrics."""
        if event.type is RunEventType.MODEL_REQUEST:
            self._step = event.step
        elif event.type is RunEventType.MODEL_RESPONSE and self._ctx.live is not None:
            # The stored response supersedes the step's live text: what is not sent yet never needs to be
            # (a model that answers at once, or within one send interval, costs the bus nothing).
            self._ctx.live.discard(self._task.id, self._attempt, event.step)
        await self.recorder.on_run_event(event)
        if self._telemetry is not None:
            self._telemetry.on_event(event)

    async def _delta(self, text: str) -> None:
        assert self._ctx.live is not None, "only hooked when live text is sent"
        self._ctx.live.add(self._task.id, self._attempt, self._step, text)

    @property
    def _approvals(self) -> ApprovalStore:
        assert self._ctx.approvals is not None, "only asked for when an approver is configured"
        return self._ctx.approvals

    async def _approve(self, call: ToolCall, requested: PolicyDecision) -> Approval | Deferred:
        """A recorded decision for a call the run waited on; otherwise the run waits (suspends)."""
        asked = (self._decisions or {}).get(call.id)
        if asked is None or asked.status is ApprovalStatus.PENDING:
            return DEFER
        reason = asked.decision_reason or asked.status.value.replace("_", " ")
        if asked.status is not ApprovalStatus.APPROVED:
            return Approval(approved=False, reason=reason)
        return Approval(approved=True, reason=reason, arguments=asked.edited_arguments)

    async def _suspend(self, outcome: RunSuspended, approval_timeout: float | None) -> None:
        """Park the run: the checkpoint, the calls it waits on, and the task to waiting, in one write."""
        checkpoint = outcome.checkpoint
        wait = approval_timeout or self._ctx.settings.approval_timeout_seconds
        expires = datetime.now(UTC) + timedelta(seconds=wait)
        asked = [
            NewApproval(
                step=checkpoint.steps_completed + 1,
                call_id=pending.call_id,
                tool=pending.name,
                arguments=pending.arguments,
                reason=pending.reason,
                expires_at=expires,
            )
            for pending in outcome.pending
        ]
        async with self.recorder.lock:
            delta = _added(checkpoint.usage, self._saved)
            events = self.recorder.take()
            moved = await self._write(
                lambda: self._approvals.suspend(
                    self._task.id,
                    self._attempt,
                    checkpoint=checkpoint.model_dump(mode="json"),
                    approvals=asked,
                    input_tokens=delta.input_tokens,
                    output_tokens=delta.output_tokens,
                    events=events,
                )
            )
            cancelled = not moved and bool(await self._write(lambda: self._ctx.store.cancel_requested([self._task.id])))
            if cancelled:
                # Cancelled while it asked: end cancelled, keeping the step's tokens and events.
                await self._write(
                    lambda: self._ctx.store.finish_cancelled(
                        self._task.id,
                        self._attempt,
                        input_tokens=delta.input_tokens,
                        output_tokens=delta.output_tokens,
                        reused_tokens=outcome.reused_usage.total_tokens,
                        events=events,
                    )
                )
        if moved:
            self._saved = checkpoint.usage
            calls = ", ".join(f"{a.tool} ({a.call_id})" for a in asked)
            self._log_end("waiting", outcome.usage, f" for approval of {calls}", outcome="waiting")
        elif cancelled:
            self._log_end("cancelled", outcome.usage)

    async def _save_checkpoint(self, checkpoint: Checkpoint) -> None:
        # The step the resumed run waited on is done: its decisions answer no later call.
        self._decisions = None
        if _is_final(checkpoint):
            # The final answer's step: the completion write follows at once and stores the same
            # response and events, so a separate checkpoint write would shorten no crash window.
            return
        async with self.recorder.lock:
            used = checkpoint.usage
            delta = _added(used, self._saved)
            await self._write(
                lambda: self._ctx.store.save_checkpoint(
                    self._task.id,
                    self._attempt,
                    checkpoint.model_dump(mode="json"),
                    input_tokens=delta.input_tokens,
                    output_tokens=delta.output_tokens,
                    events=self.recorder.take(),
                )
            )
            self._saved = used
        await self._check_budget()

    async def _check_budget(self) -> None:
        """Stop the run before its next step once its tenant's daily token budget is spent."""
        quotas = self._ctx.quotas
        if quotas is None:
            return
        try:
            spent = await quotas.budget_spent(self._task.tenant)
        except DatabaseUnavailable:
            return  # checked again after the next step; the run's own writes retry meanwhile
        if spent:
            self._over_budget = True
            self._cancelled.set()

    def _usage_kwargs(self, used: Usage, reused: Usage) -> dict[str, int]:
        """Token counts for a final write: this attempt's new usage minus what checkpoints already added."""
        input_saved = self._saved.input_tokens - self._baseline.input_tokens
        output_saved = self._saved.output_tokens - self._baseline.output_tokens
        return {
            "input_tokens": max(0, used.input_tokens - input_saved),
            "output_tokens": max(0, used.output_tokens - output_saved),
            "reused_tokens": reused.total_tokens,
        }

    async def _complete(self, outcome: RunSuccess) -> None:
        result = jsonable(outcome.output)
        if await self._finish(
            lambda events, used, reused: self._ctx.store.complete(
                self._task.id, self._attempt, result=result, **self._usage_kwargs(used, reused), events=events
            ),
            outcome.usage,
            outcome.reused_usage,
        ):
            self._log_end("completed", outcome.usage)

    async def _fail(self, error_type: str, message: str, used: Usage, reused: Usage) -> None:
        message = redact_text(message)
        self.recorder.add(EventType.ERROR, {"type": error_type, "message": message})
        if await self._finish(
            lambda events, u, r: self._ctx.store.fail(
                self._task.id,
                self._attempt,
                error_type=str(error_type),
                error_message=message,
                **self._usage_kwargs(u, r),
                events=events,
            ),
            used,
            reused,
        ):
            self._log_end("failed", used, f" ({error_type}: {_short(message)})", error_type=str(error_type))

    async def _schedule_retry(self, error: RunError, delay: float, used: Usage, reused: Usage) -> None:
        run_after = datetime.now(UTC) + timedelta(seconds=delay)
        message = redact_text(str(error))
        self.recorder.add(
            EventType.ATTEMPT_FAILED,
            {"attempt": self._attempt, "type": error.kind, "message": message, "retry_in_seconds": delay},
        )
        moved = await self._finish(
            lambda events, u, r: self._ctx.store.schedule_retry(
                self._task.id,
                self._attempt,
                error_type=error.kind,
                error_message=message,
                run_after=run_after,
                **self._usage_kwargs(u, r),
                events=events,
            ),
            used,
            reused,
        )
        if moved:
            self._log_end(
                "pending",
                used,
                f" in {delay:.1f}s ({error.kind}: {_short(message)})",
                outcome="failed, retrying",
                error_type=error.kind,
                retry_in_seconds=round(delay, 3),
            )
            await self._ctx.republish(self._task, delay)

    async def _finish(
        self,
        write: Callable[[list[Any], Usage, Usage], Awaitable[bool]],
        used: Usage,
        reused: Usage,
    ) -> bool:
        async with self.recorder.lock:
            return await self._write(lambda: write(self.recorder.take(), used, reused))

    async def _write(self, write: Callable[[], Awaitable[T]]) -> T:
        """Retry a write while the database is unreachable; the run's result must not be lost."""
        # Nearly every write succeeds at once, and setting up tenacity per write cost ~3% of a draining
        # worker's CPU: it takes over after a failure, which it replays as its attempt 1 so the waits
        # come out as if it had run it.
        try:
            return await write()
        except DatabaseUnavailable as error:
            failed = [error]
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DatabaseUnavailable),
            wait=wait_exponential_jitter(initial=0.2, max=5.0),
            reraise=True,
        ):
            with attempt:
                if failed:
                    raise failed.pop()
                return await write()
        raise AssertionError("unreachable")  # pragma: no cover


def _added(used: Usage, saved: Usage) -> Usage:
    """What a checkpoint's cumulative usage adds to what the task row already holds."""
    return Usage(
        input_tokens=used.input_tokens - saved.input_tokens, output_tokens=used.output_tokens - saved.output_tokens
    )


def _short(message: str, limit: int = 200) -> str:
    """An error message as one bounded line: a tool's error text can be long or span lines."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _is_final(checkpoint: Checkpoint) -> bool:
    """The step ended with an answer (no tool calls, and no correction asked for after it)."""
    last = checkpoint.messages[-1] if checkpoint.messages else None
    return isinstance(last, AssistantMessage) and not last.tool_calls
