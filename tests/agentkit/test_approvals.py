"""Approvals: a run suspends on DEFER and resumes from its checkpoint without asking the model again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from agentkit import DEFER, Approval, Deferred, PendingApproval, RunSuspended
from agentkit.agent import Agent, AgentDefinition, Limits
from agentkit.events import RunEventType
from agentkit.hooks import RunHooks
from agentkit.messages import AssistantMessage, ToolCall, ToolResultMessage, Usage
from agentkit.outcome import Checkpoint, RunOutcome, RunSuccess
from agentkit.policy import Policy, PolicyDecision, PolicyVerdict
from agentkit.testing import ScriptedModel
from agentkit.tools import tool

from .helpers import EventLog, answer, call, calls

sent: list[str] = []


@tool
def send_email(to: str, subject: str, retries: int = 0) -> str:
    """Send an email."""
    sent.append(f"{to}:{subject}")
    return f"sent to {to}"


@tool
def lookup(who: str) -> str:
    """Look up a contact."""
    return f"{who}@example.com"


def no_ceo(arguments: Mapping[str, Any]) -> str | None:
    return "nobody writes to the CEO" if arguments["to"] == "ceo@example.com" else None


POLICY = Policy(require_approval={"send_email"}, constraints={"send_email": [no_ceo]}, approval_timeout=3600)
Answer = bool | Approval | Deferred


class Approver:
    """An approver that answers from a table of decisions by call id (DEFER for the rest), like a host."""

    def __init__(self, decisions: Mapping[str, Answer] | None = None) -> None:
        self.decisions = dict(decisions or {})
        self.asked: list[ToolCall] = []

    async def __call__(self, tool_call: ToolCall, decision: PolicyDecision) -> Answer:
        assert decision.verdict is PolicyVerdict.APPROVAL_REQUIRED
        self.asked.append(tool_call)
        return self.decisions.get(tool_call.id, DEFER)


def agent(model: ScriptedModel, policy: Policy = POLICY, **limits: Any) -> Agent:
    definition = AgentDefinition(name="mailer", tools=[send_email, lookup], policy=policy, limits=Limits(**limits))
    return Agent(definition, model)


async def run(
    model: ScriptedModel,
    approver: Approver,
    *,
    resume: Checkpoint | None = None,
    log: EventLog | None = None,
    checkpoints: list[Checkpoint] | None = None,
) -> RunOutcome:
    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        if checkpoints is not None:
            checkpoints.append(checkpoint)

    hooks = RunHooks(on_event=log, approve=approver, on_checkpoint=on_checkpoint)
    return await agent(model).run("write to Ada", hooks=hooks, resume=resume, run_id="r1")


async def suspended(*tool_calls: ToolCall, log: EventLog | None = None) -> tuple[RunSuspended, list[Checkpoint]]:
    """A run whose step 2 asks for ``tool_calls`` and suspends (step 1 looks Ada up)."""
    sent.clear()
    model = ScriptedModel([calls(call("lookup", "c0", who="ada")), calls(*tool_calls, tokens=20)])
    checkpoints: list[Checkpoint] = []
    outcome = await run(model, Approver(), log=log, checkpoints=checkpoints)
    assert isinstance(outcome, RunSuspended)
    assert len(model.requests) == 2
    return outcome, checkpoints


EMAIL = call("send_email", "c1", to="ada@example.com", subject="hi")


async def test_defer_suspends_with_the_pending_call_and_a_checkpoint() -> None:
    log = EventLog()
    outcome, checkpoints = await suspended(EMAIL, log=log)

    assert sent == []
    assert outcome.ok is False and outcome.run_id == "r1"
    pending = PendingApproval(
        call_id="c1",
        name="send_email",
        arguments={"to": "ada@example.com", "subject": "hi", "retries": 0},  # validated, defaults filled in
        reason="tool 'send_email' requires approval",
    )
    assert outcome.pending == (pending,)
    checkpoint = outcome.checkpoint
    assert checkpoint.pending_approvals == [pending]
    assert checkpoint.steps_completed == 1 == outcome.steps
    last = checkpoint.messages[-1]
    assert isinstance(last, AssistantMessage) and [c.id for c in last.tool_calls] == ["c1"]
    assert checkpoint.messages == list(outcome.messages)
    # Usage includes the suspended step's model call: a resume must not pay for it again.
    assert checkpoint.usage == Usage(input_tokens=30, output_tokens=30, requests=2) == outcome.usage
    # Only step 1 reached on_checkpoint; the host stores the suspension's checkpoint itself.
    assert [c.steps_completed for c in checkpoints] == [1]
    assert all(not c.pending_approvals for c in checkpoints)

    step2 = [e for e in log.events if e.step == 2]
    assert [e.type for e in step2] == [
        RunEventType.MODEL_REQUEST,
        RunEventType.MODEL_RESPONSE,
        RunEventType.TOOL_CALL,
        RunEventType.POLICY_DECISION,
        RunEventType.APPROVAL_REQUESTED,
    ]
    decision = step2[3].payload
    assert (decision["verdict"], decision["approved"]) == ("approval_required", None)
    assert step2[4].payload == {
        "id": "c1",
        "name": "send_email",
        "arguments": pending.arguments,
        "reason": pending.reason,
    }


async def test_checkpoint_with_pending_approvals_survives_json() -> None:
    outcome, _ = await suspended(EMAIL)
    stored = Checkpoint.model_validate_json(outcome.checkpoint.model_dump_json())
    assert stored == outcome.checkpoint and stored.pending_approvals == list(outcome.pending)


def test_old_checkpoints_load_and_pending_calls_must_belong_to_the_last_message() -> None:
    old = Checkpoint.model_validate(
        {"run_id": "r", "agent_name": "a", "goal": "g", "messages": [], "steps_completed": 0}
    )
    assert old.pending_approvals == []
    stray = PendingApproval(call_id="c9", name="send_email", arguments={}, reason="r")
    with pytest.raises(ValueError, match="c9"):
        Checkpoint(
            run_id="r",
            agent_name="a",
            goal="g",
            messages=[AssistantMessage(tool_calls=(EMAIL,))],
            steps_completed=0,
            pending_approvals=[stray],
        )


async def test_resume_with_approval_runs_the_tool_without_calling_the_model_again() -> None:
    outcome, _ = await suspended(EMAIL)
    log = EventLog()
    checkpoints: list[Checkpoint] = []
    model = ScriptedModel([answer("done", tokens=5)])
    approver = Approver({"c1": Approval(approved=True, reason="looks fine")})
    resumed = await run(model, approver, resume=outcome.checkpoint, log=log, checkpoints=checkpoints)

    assert isinstance(resumed, RunSuccess) and resumed.output == "done"
    assert sent == ["ada@example.com:hi"]
    assert len(model.requests) == 1  # only step 3, the answer: step 2's model call was not repeated
    assert [c.steps_completed for c in checkpoints] == [2, 3]
    assert resumed.steps == 3 and resumed.usage == Usage(input_tokens=5, output_tokens=5, requests=1)
    assert resumed.reused_usage == outcome.checkpoint.usage
    result = model.requests[0].messages[-1]
    assert isinstance(result, ToolResultMessage) and result.content == "sent to ada@example.com"

    assert log.events[0].type is RunEventType.RESUMED
    assert log.events[0].payload["steps_reused"] == 1 and log.events[0].payload["pending_approvals"] == ["c1"]
    assert [(e.type.value, e.step) for e in log.events[1:4]] == [
        ("tool_call", 2),
        ("policy_decision", 2),
        ("tool_result", 2),
    ]
    decision = log.events[2].payload
    assert (decision["verdict"], decision["approved"], decision["approver_reason"]) == ("allow", True, "looks fine")
    assert decision["arguments_edited"] is False


async def test_resume_with_denial_tells_the_model_and_counts_as_denied() -> None:
    outcome, _ = await suspended(EMAIL)
    model = ScriptedModel([answer("I did not send it")])
    checkpoints: list[Checkpoint] = []
    approver = Approver({"c1": Approval(approved=False, reason="not today")})
    resumed = await run(model, approver, resume=outcome.checkpoint, checkpoints=checkpoints)

    assert isinstance(resumed, RunSuccess)
    assert sent == []
    result = model.requests[0].messages[-1]
    assert isinstance(result, ToolResultMessage) and result.is_error
    assert "approver refused" in result.content and "not today" in result.content
    assert checkpoints[0].denied_calls == 1 and checkpoints[0].tool_errors == 0


async def test_edited_arguments_are_used_and_shown() -> None:
    outcome, _ = await suspended(EMAIL)
    log = EventLog()
    model = ScriptedModel([answer("done")])
    edited = {"to": "ada@example.org", "subject": "hello", "retries": "2"}
    resumed = await run(
        model, Approver({"c1": Approval(approved=True, arguments=edited)}), resume=outcome.checkpoint, log=log
    )

    assert isinstance(resumed, RunSuccess)
    assert sent == ["ada@example.org:hello"]
    used = {"to": "ada@example.org", "subject": "hello", "retries": 2}  # validated and coerced
    decision = log.of(RunEventType.POLICY_DECISION)[0].payload
    assert (decision["verdict"], decision["arguments_edited"], decision["arguments"]) == ("allow", True, used)
    assert log.of(RunEventType.TOOL_RESULT)[0].payload["arguments"] == used
    result = model.requests[0].messages[-1]
    assert isinstance(result, ToolResultMessage) and not result.is_error
    assert "edited arguments" in result.content and "ada@example.org" in result.content


async def test_invalid_edited_arguments_give_the_model_a_tool_error() -> None:
    outcome, _ = await suspended(EMAIL)
    log = EventLog()
    checkpoints: list[Checkpoint] = []
    model = ScriptedModel([answer("could not send")])
    approval = Approval(approved=True, arguments={"to": "ada@example.com", "subject": "hi", "retries": "many"})
    resumed = await run(model, Approver({"c1": approval}), resume=outcome.checkpoint, log=log, checkpoints=checkpoints)

    assert isinstance(resumed, RunSuccess)
    assert sent == []
    result = log.of(RunEventType.TOOL_RESULT)[0].payload
    assert (result["is_error"], result["error_kind"]) == (True, "invalid_arguments")
    assert "retries" in result["content"] and "edited arguments for tool 'send_email' are invalid" in result["content"]
    assert checkpoints[0].tool_errors == 1 and checkpoints[0].denied_calls == 0


async def test_edited_arguments_cannot_escape_a_constraint() -> None:
    outcome, _ = await suspended(EMAIL)
    log = EventLog()
    model = ScriptedModel([answer("blocked")])
    approval = Approval(approved=True, arguments={"to": "ceo@example.com", "subject": "hi"})
    resumed = await run(model, Approver({"c1": approval}), resume=outcome.checkpoint, log=log)

    assert isinstance(resumed, RunSuccess)
    assert sent == []
    decision = log.of(RunEventType.POLICY_DECISION)[0].payload
    assert (decision["verdict"], decision["approved"]) == ("deny", True)
    assert "nobody writes to the CEO" in decision["reason"]
    assert log.of(RunEventType.TOOL_RESULT)[0].payload["error_kind"] == "denied"


async def test_two_calls_in_one_step_are_each_decided() -> None:
    second = call("send_email", "c2", to="bob@example.com", subject="yo")
    outcome, _ = await suspended(EMAIL, second)
    assert [p.call_id for p in outcome.pending] == ["c1", "c2"]
    assert outcome.checkpoint.pending_approvals == list(outcome.pending)

    model = ScriptedModel([answer("one sent")])
    approver = Approver({"c1": True, "c2": Approval(approved=False, reason="no")})
    resumed = await run(model, approver, resume=outcome.checkpoint)
    assert isinstance(resumed, RunSuccess)
    assert sent == ["ada@example.com:hi"]
    assert [c.id for c in approver.asked] == ["c1", "c2"]
    results = [m for m in model.requests[0].messages if isinstance(m, ToolResultMessage)][-2:]
    assert [(r.tool_call_id, r.is_error) for r in results] == [("c1", False), ("c2", True)]


async def test_one_deferred_call_holds_back_the_whole_step() -> None:
    # c1 is decided, c2 is not: nothing runs, and only c2 is pending.
    sent.clear()
    second = call("send_email", "c2", to="bob@example.com", subject="yo")
    model = ScriptedModel([calls(EMAIL, call("lookup", "c3", who="bob"), second)])
    outcome = await run(model, Approver({"c1": True}))
    assert isinstance(outcome, RunSuspended)
    assert sent == [] and [p.call_id for p in outcome.pending] == ["c2"]
    assert outcome.steps == 0 and outcome.checkpoint.steps_completed == 0


async def test_defer_again_on_resume_suspends_again_with_the_same_calls() -> None:
    outcome, _ = await suspended(EMAIL)
    model = ScriptedModel([])
    again = await run(model, Approver(), resume=outcome.checkpoint)

    assert isinstance(again, RunSuspended)
    assert model.requests == [] and sent == []
    assert again.pending == outcome.pending
    assert again.checkpoint == outcome.checkpoint
    assert again.usage == Usage() and again.reused_usage == outcome.checkpoint.usage

    # ... and a later resume still finishes the step once.
    final = ScriptedModel([answer("done")])
    done = await run(final, Approver({"c1": True}), resume=again.checkpoint)
    assert isinstance(done, RunSuccess) and sent == ["ada@example.com:hi"] and len(final.requests) == 1


async def test_bool_approvers_still_work() -> None:
    sent.clear()

    async def yes(tool_call: ToolCall, decision: PolicyDecision) -> bool:
        return True

    model = ScriptedModel([calls(EMAIL), answer("done")])
    hooks = RunHooks(approve=yes)
    outcome = await agent(model).run("write", hooks=hooks)
    assert isinstance(outcome, RunSuccess) and sent == ["ada@example.com:hi"]


def test_approval_timeout_must_be_positive() -> None:
    assert Policy().approval_timeout is None
    assert Policy(approval_timeout=60).approval_timeout == 60
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="approval_timeout"):
            Policy(approval_timeout=bad)
