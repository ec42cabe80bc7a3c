from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from agentkit.agent import Agent, AgentDefinition, Limits
from agentkit.context import RunContext
from agentkit.errors import (
    ModelAuthError,
    ModelFailed,
    ModelServerError,
    OutputValidationFailed,
    RunCancelled,
    StepLimitExceeded,
    ToolFailed,
    UsageLimitExceeded,
)
from agentkit.events import RunEventType
from agentkit.hooks import RunHooks
from agentkit.messages import AssistantMessage, SystemMessage, ToolResultMessage, Usage, UserMessage
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.outcome import Checkpoint, RunFailure, RunSuccess
from agentkit.testing import FunctionModel, ScriptedModel
from agentkit.tools import tool

from .helpers import EventLog, answer, call, calls

DEADLINE = 5.0  # generous upper bound; tests finish in milliseconds unless something hangs


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def make_agent(model: Any, *tools: Any, **kwargs: Any) -> Agent:
    limits = kwargs.pop("limits", Limits())
    return Agent(AgentDefinition(name="t", instructions="Be exact.", tools=list(tools), limits=limits, **kwargs), model)


async def test_final_answer_in_one_step_with_instructions_goal_input_and_tools() -> None:
    model = ScriptedModel([answer("hello")])
    outcome = await make_agent(model, add).run("Greet", input={"name": "Ada", "n": 2})
    assert isinstance(outcome, RunSuccess)
    assert (outcome.output, outcome.text, outcome.steps) == ("hello", "hello", 1)
    assert outcome.usage == Usage(input_tokens=10, output_tokens=10, requests=1)
    request = model.requests[0]
    assert request.messages[0] == SystemMessage(content="Be exact.")
    goal = request.messages[1]
    assert isinstance(goal, UserMessage) and goal.content.startswith("Greet")
    assert '"name": "Ada"' in goal.content
    assert [t.name for t in request.tools] == ["add"]


async def test_invalid_arguments_are_returned_and_the_model_corrects_itself() -> None:
    model = ScriptedModel([calls(call("add", a="one", b=2)), calls(call("add", "c2", a=1, b=2)), answer("3")])
    outcome = await make_agent(model, add).run("add 1 and 2")
    assert isinstance(outcome, RunSuccess) and outcome.output == "3"
    error = model.requests[1].messages[-1]
    assert (
        isinstance(error, ToolResultMessage)
        and error.is_error
        and "a: Input should be a valid integer" in error.content
    )
    fixed = model.requests[2].messages[-1]
    assert isinstance(fixed, ToolResultMessage) and (fixed.content, fixed.is_error) == ("3", False)


async def test_unknown_tool_is_reported_to_the_model() -> None:
    model = ScriptedModel([calls(call("nope")), answer("sorry")])
    outcome = await make_agent(model, add).run("x")
    assert isinstance(outcome, RunSuccess)
    result = model.requests[1].messages[-1]
    assert isinstance(result, ToolResultMessage) and result.content == "Unknown tool 'nope'. Available tools: add."


async def test_tool_calls_in_one_turn_run_concurrently() -> None:
    barrier = asyncio.Barrier(2)

    @tool(timeout=DEADLINE)
    async def left() -> str:
        """Waits for right."""
        await barrier.wait()  # only passes if `right` is running at the same time
        return "L"

    @tool(timeout=DEADLINE)
    async def right() -> str:
        """Waits for left."""
        await barrier.wait()
        return "R"

    model = ScriptedModel([calls(call("left", "c1"), call("right", "c2")), answer("both")])
    outcome = await make_agent(model, left, right).run("go")
    assert isinstance(outcome, RunSuccess)
    results = [m for m in model.requests[1].messages if isinstance(m, ToolResultMessage)]
    assert [(r.tool_call_id, r.content, r.is_error) for r in results] == [("c1", "L", False), ("c2", "R", False)]


async def test_each_tool_result_says_how_long_its_call_ran_and_a_call_that_did_not_run_has_none() -> None:
    @tool(timeout=DEADLINE)
    async def slow() -> str:
        """Naps."""
        await asyncio.sleep(0.05)
        return "done"

    log = EventLog()
    model = ScriptedModel([calls(call("slow", "c1"), call("add", "c2", a=1, b=2), call("nope", "c3")), answer("ok")])
    outcome = await make_agent(model, slow, add).run("go", hooks=RunHooks(on_event=log))
    assert isinstance(outcome, RunSuccess)
    durations = {e.payload["id"]: e.payload["duration_seconds"] for e in log.of(RunEventType.TOOL_RESULT)}
    assert durations["c1"] >= 0.05 and 0 <= durations["c2"] < durations["c1"]
    assert durations["c3"] is None


@pytest.mark.parametrize("how", ["sleeps", "spins"])
async def test_a_blocking_sync_tool_leaves_the_event_loop_free(how: str) -> None:
    loop_ticked = threading.Event()

    @tool(timeout=3 * DEADLINE)
    def blocking() -> str:
        """Blocks (sleeping or burning CPU) until the loop has ticked, or gives up at the deadline."""
        deadline = time.monotonic() + DEADLINE
        while not loop_ticked.is_set() and time.monotonic() < deadline:
            if how == "sleeps":
                time.sleep(0.01)
        # Run on the event loop, this call would hold it until the deadline: no tick could happen.
        return "the loop ran meanwhile" if loop_ticked.is_set() else "the loop was frozen"

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1
            if ticks >= 5:
                loop_ticked.set()

    log = EventLog()
    model = ScriptedModel([calls(call("blocking")), answer("done")])
    ticking = asyncio.create_task(ticker())
    try:
        outcome = await make_agent(model, blocking).run("go", hooks=RunHooks(on_event=log))
    finally:
        ticking.cancel()
    assert isinstance(outcome, RunSuccess)
    results = [m for m in outcome.messages if isinstance(m, ToolResultMessage)]
    assert [(r.content, r.is_error) for r in results] == [("the loop ran meanwhile", False)]
    assert [e.payload["verdict"] for e in log.of(RunEventType.POLICY_DECISION)] == ["allow"]
    assert [e.payload["content"] for e in log.of(RunEventType.TOOL_RESULT)] == ["the loop ran meanwhile"]


async def test_a_stuck_sync_tool_times_out_without_holding_the_loop() -> None:
    release = threading.Event()

    @tool
    def stuck() -> str:
        """Waits for a release that only comes after the run."""
        release.wait(DEADLINE)
        return "late"

    model = ScriptedModel([calls(call("stuck")), answer("gave up")])
    try:
        outcome = await make_agent(model, stuck, limits=Limits(tool_timeout=0.05)).run("go")
    finally:
        release.set()
    assert isinstance(outcome, RunSuccess)
    timed_out = [m for m in outcome.messages if isinstance(m, ToolResultMessage)]
    assert [m.content for m in timed_out] == ["Tool 'stuck' timed out after 0.05s."]


async def test_tool_timeout_is_reported_and_repeated_tool_errors_end_the_run() -> None:
    never = asyncio.Event()

    @tool
    async def slow() -> str:
        """Never finishes."""
        await never.wait()
        return "unreachable"

    model = ScriptedModel([calls(call("slow", f"c{i}")) for i in range(3)])
    agent = make_agent(model, slow, limits=Limits(tool_timeout=0.01, max_tool_errors=1))
    outcome = await agent.run("go")
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, ToolFailed)
    assert outcome.steps == 2
    timed_out = outcome.messages[-1]
    assert isinstance(timed_out, ToolResultMessage) and "timed out after 0.01s" in timed_out.content


async def test_run_context_carries_deps_step_usage_and_run_id() -> None:
    seen: list[tuple[str, int, int, str]] = []

    @tool
    def whoami(ctx: RunContext[dict[str, str]]) -> str:
        """Report the caller."""
        seen.append((ctx.deps["tenant"], ctx.step, ctx.usage.total_tokens, ctx.run_id))
        return "ok"

    model = ScriptedModel([calls(call("whoami")), answer("done")])
    await make_agent(model, whoami).run("x", deps={"tenant": "acme"}, run_id="run-7")
    assert seen == [("acme", 1, 20, "run-7")]


class Person(BaseModel):
    name: str
    age: int


async def test_structured_output_retries_after_validation_error_then_succeeds() -> None:
    model = ScriptedModel([answer('{"name": "Ada"}'), answer('```json\n{"name": "Ada", "age": 36}\n```')])
    outcome = await make_agent(model, output_type=Person).run("who?")
    assert isinstance(outcome, RunSuccess)
    assert outcome.output_as(Person) == Person(name="Ada", age=36)
    system = model.requests[0].messages[0]
    assert isinstance(system, SystemMessage) and '"age"' in system.content and "JSON" in system.content
    feedback = model.requests[1].messages[-1]
    assert isinstance(feedback, UserMessage) and "age: Field required" in feedback.content
    with pytest.raises(TypeError):
        outcome.output_as(str)


async def test_structured_output_gives_up_after_max_output_retries() -> None:
    model = ScriptedModel(["not json", "still not", "nope"])
    outcome = await make_agent(model, output_type=Person, limits=Limits(max_output_retries=2)).run("who?")
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, OutputValidationFailed)
    assert outcome.error.kind == "invalid_output"
    assert len(model.requests) == 3 and outcome.steps == 3


async def test_step_limit() -> None:
    model = ScriptedModel([calls(call("add", f"c{i}", a=1, b=1)) for i in range(2)])
    outcome = await make_agent(model, add, limits=Limits(max_steps=2)).run("loop")
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, StepLimitExceeded)
    assert outcome.steps == 2 and len(model.requests) == 2


async def test_usage_limit_stops_before_the_next_request() -> None:
    model = ScriptedModel([calls(call("add", "c1", a=1, b=1), tokens=30), answer("never asked")])
    outcome = await make_agent(model, add, limits=Limits(max_total_tokens=50)).run("x")
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, UsageLimitExceeded)
    assert outcome.usage.total_tokens == 60 and len(model.requests) == 1


@pytest.mark.parametrize(("error", "retryable"), [(ModelServerError("503"), True), (ModelAuthError("401"), False)])
async def test_model_errors_become_model_failed_keeping_retryable(error: Exception, retryable: bool) -> None:
    log = EventLog()
    outcome = await make_agent(ScriptedModel([error])).run("x", hooks=RunHooks(on_event=log))
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, ModelFailed)
    assert outcome.error.cause is error and outcome.error.retryable is retryable
    assert log.of(RunEventType.ERROR)[0].payload["retryable"] is retryable


async def test_cancellation_between_steps() -> None:
    stop = asyncio.Event()

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        stop.set()  # the host cancels right after step 1 is durable

    model = ScriptedModel([calls(call("add", a=1, b=1)), answer("never asked")])
    hooks = RunHooks(is_cancelled=stop.is_set, on_checkpoint=on_checkpoint)
    outcome = await make_agent(model, add).run("x", hooks=hooks)
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, RunCancelled)
    assert outcome.steps == 1 and len(model.requests) == 1
    assert outcome.checkpoint is not None and outcome.checkpoint.steps_completed == 1


async def test_cancellation_while_a_tool_runs_cancels_it_promptly() -> None:
    started, never = asyncio.Event(), asyncio.Event()
    cleaned_up: list[str] = []

    @tool(timeout=600)
    async def long_job() -> str:
        """Runs for ever."""
        started.set()
        try:
            await never.wait()
        finally:
            cleaned_up.append("cancelled")
        return "unreachable"

    async def is_cancelled() -> bool:
        return started.is_set()

    model = ScriptedModel([calls(call("long_job"))])
    hooks = RunHooks(is_cancelled=is_cancelled, cancel_poll_interval=0.001)
    outcome = await asyncio.wait_for(make_agent(model, long_job).run("x", hooks=hooks), DEADLINE)
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, RunCancelled)
    assert cleaned_up == ["cancelled"]
    assert outcome.steps == 0 and outcome.checkpoint is None  # the step never finished


async def test_cancellation_during_a_model_request() -> None:
    entered, never = asyncio.Event(), asyncio.Event()

    async def hang(request: ModelRequest) -> ModelResponse:
        entered.set()
        await never.wait()
        return ModelResponse(text="unreachable")

    hooks = RunHooks(is_cancelled=entered.is_set, cancel_poll_interval=0.001)
    outcome = await asyncio.wait_for(make_agent(FunctionModel(hang)).run("x", hooks=hooks), DEADLINE)
    assert isinstance(outcome, RunFailure) and outcome.error.kind == "cancelled"


async def test_a_cancelled_event_stops_a_model_request_without_polling() -> None:
    cancelled, never = asyncio.Event(), asyncio.Event()

    async def hang(request: ModelRequest) -> ModelResponse:
        cancelled.set()  # the host cancels while the model call is in flight
        await never.wait()
        return ModelResponse(text="unreachable")

    # A poll interval of an hour: only waiting on the event can end this run within the deadline.
    hooks = RunHooks(cancelled=cancelled, cancel_poll_interval=3600)
    outcome = await asyncio.wait_for(make_agent(FunctionModel(hang)).run("x", hooks=hooks), DEADLINE)
    assert isinstance(outcome, RunFailure) and outcome.error.kind == "cancelled"


async def test_a_cancelled_event_set_between_steps_ends_the_run_before_the_next() -> None:
    cancelled = asyncio.Event()

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        cancelled.set()

    model = ScriptedModel([calls(call("add", a=1, b=1)), answer("never asked")])
    outcome = await make_agent(model, add).run("x", hooks=RunHooks(cancelled=cancelled, on_checkpoint=on_checkpoint))
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, RunCancelled)
    assert len(model.requests) == 1


async def test_event_sequence_and_payloads() -> None:
    log = EventLog()
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    model = ScriptedModel([calls(call("add", a=2, b=3)), answer("5")])
    await make_agent(model, add).run("x", hooks=RunHooks(on_event=log, on_delta=on_delta), run_id="r1")
    assert log.types() == [
        "model_request",
        "model_response",
        "tool_call",
        "policy_decision",
        "tool_result",
        "model_request",
        "model_response",
        "final_answer",
    ]
    assert [e.step for e in log.events] == [1, 1, 1, 1, 1, 2, 2, 2]
    assert {e.run_id for e in log.events} == {"r1"}
    assert log.events[1].payload["usage"] == {
        "input_tokens": 10,
        "output_tokens": 10,
        "total_tokens": 20,
        "requests": 1,
        "estimated": False,
    }
    assert log.events[2].payload == {"id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}
    assert log.events[4].payload["content"] == "5"
    assert log.events[-1].payload == {"output": "5", "text": "5"}
    assert deltas == ["5"]
    for event in log.events:  # every event survives a JSON round trip unchanged
        assert type(event).model_validate_json(event.model_dump_json()) == event


async def test_checkpoint_resume_reuses_finished_steps() -> None:
    executed: list[int] = []

    @tool
    def work(n: int) -> str:
        """Do some work."""
        executed.append(n)
        return f"done {n}"

    checkpoints: list[Checkpoint] = []

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        checkpoints.append(checkpoint)

    first = ScriptedModel(
        [calls(call("work", "c1", n=1)), calls(call("work", "c2", n=2), tokens=20), ModelServerError("crash")]
    )
    failed = await make_agent(first, work).run("job", hooks=RunHooks(on_checkpoint=on_checkpoint), run_id="r9")
    assert isinstance(failed, RunFailure) and failed.error.retryable
    assert [c.steps_completed for c in checkpoints] == [1, 2]
    assert failed.checkpoint == checkpoints[-1]
    # The host stores the checkpoint as JSON and loads it after a restart.
    stored = Checkpoint.model_validate_json(checkpoints[-1].model_dump_json())
    assert stored == checkpoints[-1] and stored.usage.total_tokens == 60

    log = EventLog()
    second = ScriptedModel([answer("all done", tokens=5)])
    resumed = await make_agent(second, work).run("job", resume=stored, hooks=RunHooks(on_event=log))
    assert isinstance(resumed, RunSuccess) and resumed.output == "all done"
    assert executed == [1, 2]  # no tool ran again
    assert len(second.requests) == 1  # only the unfinished step asked the model
    assert list(second.requests[0].messages) == stored.messages
    assert resumed.run_id == "r9" and resumed.steps == 3
    assert resumed.usage == Usage(input_tokens=5, output_tokens=5, requests=1)
    assert resumed.reused_usage == stored.usage and resumed.total_usage.total_tokens == 70
    assert log.events[0].type is RunEventType.RESUMED
    assert log.events[0].payload["steps_reused"] == 2 and log.events[0].payload["tokens_saved"] == 60


async def test_resume_after_final_step_does_not_call_the_model() -> None:
    checkpoints: list[Checkpoint] = []

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        checkpoints.append(checkpoint)

    await make_agent(ScriptedModel([answer("42")])).run("x", hooks=RunHooks(on_checkpoint=on_checkpoint))
    last = checkpoints[-1]
    assert isinstance(last.messages[-1], AssistantMessage)
    unused = ScriptedModel([])
    outcome = await make_agent(unused).run("x", resume=last)
    assert isinstance(outcome, RunSuccess) and outcome.output == "42"
    assert unused.requests == [] and outcome.usage == Usage()


async def test_resume_keeps_counting_towards_limits() -> None:
    checkpoints: list[Checkpoint] = []

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        checkpoints.append(checkpoint)

    first = ScriptedModel([calls(call("add", a=1, b=1)), ModelServerError("crash")])
    await make_agent(first, add).run("x", hooks=RunHooks(on_checkpoint=on_checkpoint))
    second = ScriptedModel([])
    outcome = await make_agent(second, add, limits=Limits(max_steps=1)).run("x", resume=checkpoints[-1])
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, StepLimitExceeded)
    assert second.requests == []


def test_run_sync_and_model_string() -> None:
    agent = Agent(AgentDefinition(name="s"), model="offline:default")
    outcome = agent.run_sync("Say hello")
    assert isinstance(outcome, RunSuccess) and outcome.model_name == "offline:default"
    assert outcome.text.startswith("[offline model]")


async def test_a_run_watched_by_a_cancelled_event_leaves_no_task_behind() -> None:
    # Every model and tool call races the same watcher; the run must cancel it when it ends.
    model = ScriptedModel([calls(call("add", a=1, b=2)), calls(call("add", "c2", a=3, b=4)), answer("10")])
    outcome = await make_agent(model, add).run("Add", hooks=RunHooks(cancelled=asyncio.Event()))
    assert isinstance(outcome, RunSuccess) and outcome.steps == 3
    await asyncio.sleep(0)  # the cancelled watcher unwinds on the next loop iteration
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_failing_cancellation_check_cancels_the_run() -> None:
    never = asyncio.Event()

    async def hang(request: ModelRequest) -> ModelResponse:
        await never.wait()
        return ModelResponse(text="unreachable")

    checks: list[None] = []

    def broken_check() -> bool:
        checks.append(None)
        if len(checks) > 1:  # fine before the step; broken while the model call is in flight
            raise RuntimeError("the host's check failed")
        return False

    hooks = RunHooks(is_cancelled=broken_check, cancel_poll_interval=0.001)
    outcome = await asyncio.wait_for(make_agent(FunctionModel(hang)).run("x", hooks=hooks), DEADLINE)
    assert isinstance(outcome, RunFailure) and outcome.error.kind == "cancelled"


async def test_the_error_event_names_the_step_in_flight_not_the_last_finished_one() -> None:
    async def fail(request: ModelRequest) -> ModelResponse:
        raise ModelServerError("vllm returned HTTP 500: boom", provider="vllm", status_code=500)

    log = EventLog()
    outcome = await make_agent(FunctionModel(fail), add).run("x", hooks=RunHooks(on_event=log))

    assert isinstance(outcome, RunFailure) and outcome.steps == 0
    (request,) = log.of(RunEventType.MODEL_REQUEST)
    (error,) = log.of(RunEventType.ERROR)
    assert request.step == error.step == 1


async def test_an_error_before_any_step_starts_stays_at_the_finished_step() -> None:
    log = EventLog()
    model = ScriptedModel([calls(call("add", a=1, b=1), tokens=50), answer("never")])
    agent = make_agent(model, add, limits=Limits(max_total_tokens=10))

    outcome = await agent.run("x", hooks=RunHooks(on_event=log))

    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, UsageLimitExceeded)
    (error,) = log.of(RunEventType.ERROR)
    assert error.step == outcome.steps == 1
