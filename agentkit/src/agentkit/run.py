"""The agent loop: ReAct with native tool calls, one durable step at a time.

A step is one model call plus, when the model asked for tools, all of those
tool calls (validated, decided by the policy, then run concurrently). After
every finished step the host gets a :class:`Checkpoint`; a resumed run starts
from it and never repeats a finished step. The loop ends on a final answer,
a bound from :class:`Limits`, a model error or the host's cancellation, and
always as a typed :class:`RunOutcome`: ``RunError`` is never raised to the host.

A step whose tool calls wait for a person's approval ends the run as
``RunSuspended`` before any of its tools run; resuming from its checkpoint
runs that step's tool phase without asking the model again.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentkit.approval import Approval, Deferred, PendingApproval
from agentkit.context import RunContext
from agentkit.errors import (
    ModelError,
    ModelFailed,
    OutputValidationFailed,
    PolicyDenied,
    RunCancelled,
    RunError,
    StepLimitExceeded,
    ToolDefinitionError,
    ToolFailed,
    ToolsUnavailable,
    ToolUnavailable,
    UsageLimitExceeded,
)
from agentkit.events import RunEvent, RunEventType, usage_payload
from agentkit.hooks import RunHooks
from agentkit.memory import LongTermMemory
from agentkit.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
    goal_text,
)
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.models.ratelimit import RateLimitWait, report_waits
from agentkit.outcome import Checkpoint, RunFailure, RunOutcome, RunSuccess, RunSuspended
from agentkit.policy import PolicyDecision, PolicyVerdict
from agentkit.tools import Tool, ToolOutput, Toolset, format_validation_error, validation_problems

if TYPE_CHECKING:
    from agentkit.agent import Agent

__all__ = ["AgentRun"]

T = TypeVar("T")

_FENCE_RE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


class _Cancelled(Exception):
    """Internal: the host's cancellation check said stop while work was in flight."""


class _Stop(Exception):
    """Internal: a bound was hit mid-step; carries the error the run ends with."""

    def __init__(self, error: RunError) -> None:
        super().__init__(str(error))
        self.error = error


class _Suspend(Exception):
    """Internal: the approver deferred calls of this step; none of its tools ran."""

    def __init__(self, step: int, pending: list[PendingApproval]) -> None:
        super().__init__(f"step {step} waits for {len(pending)} approval(s)")
        self.step = step
        self.pending = pending


@dataclass(frozen=True)
class _Run:
    """Internal: a call cleared to run with these arguments (edited ones if a person changed them)."""

    validated: BaseModel
    edited: bool = False


async def _timed(running: Awaitable[ToolOutput]) -> tuple[ToolOutput, float]:
    started = time.perf_counter()
    output = await running
    return output, round(time.perf_counter() - started, 6)


def _denied(decision: PolicyDecision) -> ToolOutput:
    return ToolOutput(f"The security policy denied this call: {decision.reason}", True, "denied")


class AgentRun:
    """The state of one run. Use once: ``await AgentRun(...).execute(resume)``."""

    def __init__(
        self,
        *,
        agent: Agent,
        goal: str,
        input: dict[str, Any] | None,
        deps: Any,
        hooks: RunHooks,
        long_term_memory: LongTermMemory | None,
        run_id: str,
        tools: Awaitable[Toolset] | None = None,
        history: Sequence[Message] = (),
    ) -> None:
        self.agent = agent
        # The agent's own tools, plus its MCP servers' once ``tools`` is awaited at the start of the run.
        self.toolset: Toolset = agent.toolset
        self._tools = tools
        self.definition = agent.definition
        self.limits = agent.definition.limits
        self.goal = goal
        self.input = input
        self.deps = deps
        self.hooks = hooks
        self.long_term_memory = long_term_memory
        self.run_id = run_id
        self.history = list(history)
        # How many of ``messages`` (after the system messages) are earlier conversation, before the goal.
        self.history_messages = 0
        self.messages: list[Message] = []
        self.steps = 0
        self.step_in_flight: int | None = None
        self._cancel_watch: asyncio.Future[None] | None = None
        self.usage = Usage()
        self.reused = Usage()
        self.output_retries = 0
        self.denied_calls = 0
        self.tool_errors = 0
        self.checkpoint: Checkpoint | None = None

    # ----------------------------------------------------------------- driver

    async def execute(self, resume: Checkpoint | None) -> RunOutcome:
        try:
            return await self._execute(resume)
        finally:
            if self._cancel_watch is not None:
                self._cancel_watch.cancel()

    async def _execute(self, resume: Checkpoint | None) -> RunOutcome:
        try:
            if self._tools is not None:
                self.toolset = await self._tools
            if resume is not None:
                await self._restore(resume)
            else:
                self.messages = await self._initial_messages()
            return await self._loop()
        except _Cancelled:
            return await self._fail(RunCancelled("the host cancelled the run"))
        except _Stop as stop:
            return await self._fail(stop.error)
        except _Suspend as suspend:
            return self._suspend(suspend.step, suspend.pending)
        except ModelError as exc:
            return await self._fail(ModelFailed(exc))
        except ToolUnavailable as exc:
            return await self._fail(ToolsUnavailable(str(exc)))
        except ToolDefinitionError as exc:
            return await self._fail(ToolFailed(f"the agent's tools cannot be set up: {exc}"))

    async def _loop(self) -> RunOutcome:
        last = self.messages[-1] if self.messages else None
        if isinstance(last, AssistantMessage) and not last.tool_calls:
            # Resumed after the final step was checkpointed: the answer exists already.
            output, problem = self._parse_output(last.content or "")
            if problem is None:
                return await self._succeed(output, last.content or "")
        elif isinstance(last, AssistantMessage):
            # Resumed from a suspension: this step's model call is done, only its tools are left.
            await self._check_cancelled()
            step = self.steps + 1
            self.step_in_flight = step
            await self._run_tools(step, last.tool_calls)
            await self._finish_step(step)
            self._check_tool_bounds()
        while True:
            await self._check_cancelled()
            if self.steps >= self.limits.max_steps:
                raise _Stop(StepLimitExceeded(f"no final answer after {self.steps} steps"))
            used, limit = (self.usage + self.reused).total_tokens, self.limits.max_total_tokens
            if limit is not None and used >= limit:
                raise _Stop(UsageLimitExceeded(f"{used} tokens used, limit is {limit}"))
            step = self.steps + 1
            self.step_in_flight = step
            response = await self._call_model(step)
            self.messages.append(response.to_message())
            if response.tool_calls:
                await self._run_tools(step, response.tool_calls)
                await self._finish_step(step)
                self._check_tool_bounds()
                continue
            text = response.text or ""
            output, problem = self._parse_output(text)
            if problem is None:
                await self._finish_step(step)
                return await self._succeed(output, text)
            self.output_retries += 1
            if self.output_retries > self.limits.max_output_retries:
                self.steps = step
                raise _Stop(OutputValidationFailed(problem))
            self.messages.append(UserMessage(content=problem))
            await self._finish_step(step)

    # ------------------------------------------------------------ set-up

    async def _initial_messages(self) -> list[Message]:
        system_parts = [self.definition.instructions.strip()]
        output_type = self.definition.output_type
        if output_type is not None:
            schema = json.dumps(output_type.model_json_schema())
            system_parts.append(
                "When you give your final answer, reply with only a JSON object (no prose, no code "
                f"fence) that validates against this JSON schema:\n{schema}"
            )
        if self.long_term_memory is not None:
            records = await self.long_term_memory.search(self.goal, limit=self.definition.memory_limit)
            if records:
                lines = "\n".join(f"- {r.text}" for r in records)
                system_parts.append(f"Relevant memories from earlier runs:\n{lines}")
        goal = goal_text(self.goal, self.input)
        system = "\n\n".join(part for part in system_parts if part)
        messages: list[Message] = [SystemMessage(content=system)] if system else []
        messages.extend(self.history)
        self.history_messages = len(self.history)
        messages.append(UserMessage(content=goal))
        return messages

    async def _restore(self, checkpoint: Checkpoint) -> None:
        self.messages = list(checkpoint.messages)
        self.history_messages = checkpoint.history_messages
        self.steps = checkpoint.steps_completed
        self.reused = checkpoint.usage
        self.output_retries = checkpoint.output_retries
        self.denied_calls = checkpoint.denied_calls
        self.tool_errors = checkpoint.tool_errors
        self.checkpoint = checkpoint
        await self._emit(
            RunEventType.RESUMED,
            self.steps,
            steps_reused=self.steps,
            reused_usage=usage_payload(checkpoint.usage),
            tokens_saved=checkpoint.usage.total_tokens,
            pending_approvals=[p.call_id for p in checkpoint.pending_approvals],
        )

    # ------------------------------------------------------------- one step

    async def _call_model(self, step: int) -> ModelResponse:
        window = self.definition.memory
        sent = (
            await window.fit(self.messages, history=self.history_messages)
            if window is not None
            else list(self.messages)
        )
        request = ModelRequest(messages=sent, tools=self.toolset.definitions(), settings=self.definition.model_settings)
        await self._emit(
            RunEventType.MODEL_REQUEST,
            step,
            model=self.agent.model.name,
            messages=len(sent),
            messages_dropped=len(self.messages) - len(sent),
            tools=self.toolset.names(),
        )
        # A rate-limited model's waits happen inside its request; this run records them as its events.
        with report_waits(lambda wait: self._report_wait(step, wait)):
            response = await self._cancellable(self.agent.model.request(request, on_delta=self.hooks.on_delta))
        self.usage += response.usage
        await self._emit(
            RunEventType.MODEL_RESPONSE,
            step,
            text=response.text,
            tool_calls=[c.model_dump() for c in response.tool_calls],
            finish_reason=response.finish_reason,
            model=response.model_name or self.agent.model.name,
            usage=usage_payload(response.usage),
        )
        return response

    async def _report_wait(self, step: int, wait: RateLimitWait) -> None:
        what = "rate limit" if wait.reason == "rate_limit" else "the provider's Retry-After"
        await self._emit(
            RunEventType.RATE_LIMIT_WAIT,
            step,
            model=wait.model,
            seconds=round(wait.seconds, 3),
            reason=wait.reason,
            message=f"waiting for {what}, {wait.seconds:.1f} s",
        )

    async def _run_tools(self, step: int, calls: Sequence[ToolCall]) -> None:
        """Decide each call in order (approvals one at a time), then run the allowed ones together.

        Raises ``_Suspend`` when the approver deferred any call: then no tool
        of the step runs and no counter moves, so a resume repeats the
        decisions from the same state.
        """
        outputs: dict[str, ToolOutput] = {}
        used: dict[str, dict[str, Any]] = {}  # the arguments each call ran (or was refused) with
        runnable: list[tuple[ToolCall, Tool, _Run]] = []
        pending: list[PendingApproval] = []
        for call in calls:
            await self._emit(RunEventType.TOOL_CALL, step, id=call.id, name=call.name, arguments=call.arguments)
            tool = self.toolset.get(call.name)
            if tool is None:
                known = ", ".join(self.toolset.names()) or "none"
                outputs[call.id] = ToolOutput(
                    f"Unknown tool {call.name!r}. Available tools: {known}.", True, "unknown_tool"
                )
                continue
            try:
                validated = tool.validate(call.arguments)
            except ValidationError as exc:
                problem = format_validation_error(tool.name, exc)
                outputs[call.id] = ToolOutput(problem, True, "invalid_arguments")
                continue
            ruling, used[call.id] = await self._decide(step, call, tool, validated)
            if isinstance(ruling, PendingApproval):
                pending.append(ruling)
            elif isinstance(ruling, _Run):
                runnable.append((call, tool, ruling))
            else:
                outputs[call.id] = ruling

        if pending:
            for waiting in pending:
                await self._emit(
                    RunEventType.APPROVAL_REQUESTED,
                    step,
                    id=waiting.call_id,
                    name=waiting.name,
                    arguments=waiting.arguments,
                    reason=waiting.reason,
                )
            raise _Suspend(step, pending)

        ctx = RunContext(
            deps=self.deps,
            run_id=self.run_id,
            step=step,
            usage=self.usage + self.reused,
            agent_name=self.definition.name,
        )
        timed = await self._cancellable(
            asyncio.gather(
                *(_timed(t.execute(r.validated, ctx, default_timeout=self.limits.tool_timeout)) for _, t, r in runnable)
            )
        )
        # How long each call ran, for hosts that time tools (traces, metrics); the ones that did not run have none.
        durations: dict[str, float] = {}
        for (call, _, ruling), (output, seconds) in zip(runnable, timed, strict=True):
            durations[call.id] = seconds
            if ruling.edited:
                # The model's own tool call still shows its arguments; say what actually ran.
                note = f"(A person approved this call with edited arguments: {json.dumps(used[call.id])})\n"
                output = ToolOutput(note + output.content, output.is_error, output.error_kind)
            outputs[call.id] = output

        for call in calls:
            output = outputs[call.id]
            if output.error_kind == "denied":
                self.denied_calls += 1
            elif output.is_error:
                self.tool_errors += 1
            self.messages.append(
                ToolResultMessage(
                    tool_call_id=call.id, name=call.name, content=output.content, is_error=output.is_error
                )
            )
            await self._emit(
                RunEventType.TOOL_RESULT,
                step,
                id=call.id,
                name=call.name,
                arguments=used.get(call.id, call.arguments),
                content=output.content,
                is_error=output.is_error,
                error_kind=output.error_kind,
                duration_seconds=durations.get(call.id),
            )

    async def _decide(
        self, step: int, call: ToolCall, tool: Tool, validated: BaseModel
    ) -> tuple[_Run | ToolOutput | PendingApproval, dict[str, Any]]:
        """The policy's (and maybe a person's) ruling on one call, and the arguments it applies to."""
        # Constraints see the validated, coerced arguments, not the model's raw JSON.
        arguments = validated.model_dump()
        checked = call.model_copy(update={"arguments": arguments})
        requested = self.definition.policy.decide(checked)
        if requested.verdict is not PolicyVerdict.APPROVAL_REQUIRED or self.hooks.approve is None:
            decision = requested
            if requested.verdict is PolicyVerdict.APPROVAL_REQUIRED:
                decision = PolicyDecision.deny(f"{requested.reason}, and no approver is configured")
            await self._emit_decision(step, call, decision, requested, arguments)
            return (_Run(validated) if decision.allowed else _denied(decision)), arguments
        answer = await self.hooks.approve(checked, requested)
        if isinstance(answer, Deferred):
            await self._emit_decision(step, call, requested, requested, arguments)
            return PendingApproval(
                call_id=call.id, name=call.name, arguments=arguments, reason=requested.reason
            ), arguments
        approval = answer if isinstance(answer, Approval) else Approval(approved=bool(answer))
        decision, ruling, used = self._apply_approval(call, tool, requested, approval, validated)
        await self._emit_decision(step, call, decision, requested, used, approval=approval, edited=used != arguments)
        return ruling, used

    def _apply_approval(
        self, call: ToolCall, tool: Tool, requested: PolicyDecision, approval: Approval, validated: BaseModel
    ) -> tuple[PolicyDecision, _Run | ToolOutput, dict[str, Any]]:
        """A person's answer to an ``approval_required`` call: the decision, the ruling and the arguments used."""
        arguments = validated.model_dump()
        if not approval.approved:
            refused = f"{requested.reason}: the approver refused"
            decision = PolicyDecision.deny(f"{refused}: {approval.reason}" if approval.reason else refused)
            return decision, _denied(decision), arguments
        approved = PolicyDecision.allow(f"{requested.reason}: approved")
        if approval.arguments is None:
            return approved, _Run(validated), arguments
        try:
            revised = tool.validate(approval.arguments)
        except ValidationError as exc:
            problem = f"The approver's edited arguments for tool {tool.name!r} are invalid: {validation_problems(exc)}."
            decision = PolicyDecision.deny(f"{requested.reason}: the approved arguments are invalid")
            return decision, ToolOutput(problem, True, "invalid_arguments"), dict(approval.arguments)
        if revised.model_dump() == arguments:
            return approved, _Run(validated), arguments
        arguments = revised.model_dump()
        # An approval answers "approval required" only: a denial of the edited call stands.
        again = self.definition.policy.decide(call.model_copy(update={"arguments": arguments}))
        if again.verdict is PolicyVerdict.DENY:
            return again, _denied(again), arguments
        edited = PolicyDecision.allow(f"{requested.reason}: approved with edited arguments")
        return edited, _Run(revised, edited=True), arguments

    async def _emit_decision(
        self,
        step: int,
        call: ToolCall,
        decision: PolicyDecision,
        requested: PolicyDecision,
        arguments: dict[str, Any],
        *,
        approval: Approval | None = None,
        edited: bool = False,
    ) -> None:
        await self._emit(
            RunEventType.POLICY_DECISION,
            step,
            id=call.id,
            name=call.name,
            verdict=decision.verdict.value,
            reason=decision.reason,
            requested_verdict=requested.verdict.value,
            approved=approval.approved if approval is not None else None,
            approver_reason=approval.reason if approval is not None else None,
            arguments=arguments,
            arguments_edited=edited,
        )

    def _check_tool_bounds(self) -> None:
        if self.denied_calls > self.limits.max_denied_calls:
            raise _Stop(
                PolicyDenied(
                    f"the model made {self.denied_calls} calls the policy denied (limit {self.limits.max_denied_calls})"
                )
            )
        if self.tool_errors > self.limits.max_tool_errors:
            raise _Stop(ToolFailed(f"{self.tool_errors} tool calls failed (limit {self.limits.max_tool_errors})"))

    def _parse_output(self, text: str) -> tuple[Any, str | None]:
        """(output, None) when the answer is acceptable, else (None, feedback for the model)."""
        output_type = self.definition.output_type
        if output_type is None:
            return text, None
        raw = text.strip()
        fenced = _FENCE_RE.match(raw)
        if fenced:
            raw = fenced.group(1).strip()
        try:
            return output_type.model_validate_json(raw), None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
            return None, (
                f"Your final answer is not valid: {problems}. Reply with only a JSON object that "
                "validates against the schema given in the instructions."
            )

    async def _finish_step(self, step: int) -> None:
        self.steps = step
        self.step_in_flight = None
        self.checkpoint = self._make_checkpoint()
        if self.hooks.on_checkpoint is not None:
            await self.hooks.on_checkpoint(self.checkpoint)

    def _make_checkpoint(self, pending: Sequence[PendingApproval] = ()) -> Checkpoint:
        return Checkpoint(
            run_id=self.run_id,
            agent_name=self.definition.name,
            goal=self.goal,
            messages=list(self.messages),
            steps_completed=self.steps,
            usage=self.usage + self.reused,
            output_retries=self.output_retries,
            denied_calls=self.denied_calls,
            tool_errors=self.tool_errors,
            pending_approvals=list(pending),
            history_messages=self.history_messages,
        )

    # ------------------------------------------------------------ endings

    async def _succeed(self, output: Any, text: str) -> RunSuccess:
        dumped = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
        await self._emit(RunEventType.FINAL_ANSWER, self.steps, output=dumped, text=text)
        return RunSuccess(
            run_id=self.run_id,
            steps=self.steps,
            usage=self.usage,
            reused_usage=self.reused,
            messages=tuple(self.messages),
            model_name=self.agent.model.name,
            output=output,
            text=text,
        )

    def _suspend(self, step: int, pending: list[PendingApproval]) -> RunSuspended:
        # Not passed to on_checkpoint: the host stores the outcome's checkpoint with the
        # pending approvals in one write.
        self.step_in_flight = None
        return RunSuspended(
            run_id=self.run_id,
            steps=step - 1,
            usage=self.usage,
            reused_usage=self.reused,
            messages=tuple(self.messages),
            model_name=self.agent.model.name,
            pending=tuple(pending),
            checkpoint=self._make_checkpoint(pending),
        )

    async def _fail(self, error: RunError) -> RunFailure:
        payload: dict[str, Any] = {"kind": error.kind, "message": str(error), "retryable": error.retryable}
        if isinstance(error, ModelFailed):
            payload["cause"] = type(error.cause).__name__
            payload["status_code"] = error.cause.status_code
        # A step that failed half-way is the one the error belongs to, not the last finished one.
        step = self.step_in_flight if self.step_in_flight is not None else self.steps
        await self._emit(RunEventType.ERROR, step, **payload)
        return RunFailure(
            run_id=self.run_id,
            steps=self.steps,
            usage=self.usage,
            reused_usage=self.reused,
            messages=tuple(self.messages),
            model_name=self.agent.model.name,
            error=error,
            checkpoint=self.checkpoint,
        )

    # ------------------------------------------------------ host plumbing

    async def _emit(self, type_: RunEventType, step: int, **payload: Any) -> None:
        if self.hooks.on_event is not None:
            await self.hooks.on_event(RunEvent.build(type_, self.run_id, step, **payload))

    async def _is_cancelled(self) -> bool:
        if self.hooks.cancelled is not None and self.hooks.cancelled.is_set():
            return True
        check = self.hooks.is_cancelled
        if check is None:
            return False
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        return bool(answer)

    async def _check_cancelled(self) -> None:
        if await self._is_cancelled():
            raise _Cancelled

    async def _cancellable(self, work: Awaitable[T]) -> T:
        """Await ``work`` while polling the host's cancellation check; cancel ``work`` promptly on True."""
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        if self.hooks.cancelled is None and self.hooks.is_cancelled is None:
            return await task
        # One watcher for the whole run, not one per call: each is a task of its own.
        if self._cancel_watch is None:
            self._cancel_watch = asyncio.ensure_future(self._wait_cancelled())
        try:
            racers: set[asyncio.Future[Any]] = {task, self._cancel_watch}
            done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if not self._cancel_watch.cancelled():
                self._cancel_watch.exception()  # a failing check counts as a cancel; reading it marks it handled
            raise _Cancelled
        finally:
            if not task.done():
                task.cancel()
                # Let cancelled tools unwind (run their finally blocks) before the run reports.
                await asyncio.gather(task, return_exceptions=True)

    async def _wait_cancelled(self) -> None:
        if self.hooks.cancelled is not None and self.hooks.is_cancelled is None:
            await self.hooks.cancelled.wait()
            return
        # The host's check is a function, not an event, so polling is the only option.
        while not await self._is_cancelled():  # noqa: ASYNC110
            await asyncio.sleep(self.hooks.cancel_poll_interval)
