from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from agentkit.agent import Agent, AgentDefinition, Limits
from agentkit.errors import PolicyDenied
from agentkit.events import RunEventType
from agentkit.hooks import RunHooks
from agentkit.messages import ToolCall, ToolResultMessage
from agentkit.outcome import RunFailure, RunSuccess
from agentkit.policy import Policy, PolicyDecision, PolicyVerdict, pydantic_constraint
from agentkit.testing import ScriptedModel
from agentkit.tools import tool

from .helpers import EventLog, answer, call, calls

ran: list[str] = []


@tool
def read_file(path: str) -> str:
    """Read a file."""
    ran.append(f"read:{path}")
    return "contents"


@tool
def delete_file(path: str) -> str:
    """Delete a file."""
    ran.append(f"delete:{path}")
    return "deleted"


def no_etc(arguments: Mapping[str, Any]) -> str | None:
    return "system paths are off limits" if str(arguments["path"]).startswith("/etc") else None


def test_decide_order_deny_allow_constraints_approval() -> None:
    policy = Policy(
        allow={"read_file", "delete_file", "search"},
        deny={"delete_file"},
        require_approval={"search"},
        constraints={"read_file": [no_etc]},
    )
    assert policy.decide(ToolCall(id="1", name="delete_file")).verdict is PolicyVerdict.DENY
    assert "deny-list" in policy.decide(ToolCall(id="1", name="delete_file")).reason
    assert "allow-list" in policy.decide(ToolCall(id="1", name="shell")).reason
    denied = policy.decide(ToolCall(id="1", name="read_file", arguments={"path": "/etc/shadow"}))
    assert denied == PolicyDecision.deny("tool 'read_file': system paths are off limits")
    assert policy.decide(ToolCall(id="1", name="read_file", arguments={"path": "a.txt"})).allowed
    assert policy.decide(ToolCall(id="1", name="search")).verdict is PolicyVerdict.APPROVAL_REQUIRED
    assert Policy().decide(ToolCall(id="1", name="anything")).allowed
    assert Policy(require_approval={"*"}).decide(ToolCall(id="1", name="x")).verdict == "approval_required"


def test_pydantic_constraint() -> None:
    class Small(BaseModel):
        limit: int = Field(le=100)

    check = pydantic_constraint(Small)
    assert check({"limit": 5, "other": "ignored"}) is None
    reason = check({"limit": 500})
    assert reason is not None and "limit" in reason and "100" in reason


async def run_with(policy: Policy, script: list[Any], hooks: RunHooks | None = None, **limits: Any) -> Any:
    ran.clear()
    model = ScriptedModel(script)
    definition = AgentDefinition(name="p", tools=[read_file, delete_file], policy=policy, limits=Limits(**limits))
    outcome = await Agent(definition, model=model).run("tidy up", hooks=hooks)
    return outcome, model


async def test_denied_call_is_told_to_the_model_which_continues() -> None:
    log = EventLog()
    outcome, model = await run_with(
        Policy(deny={"delete_file"}),
        [calls(call("delete_file", path="a")), calls(call("read_file", "c2", path="a")), answer("done")],
        RunHooks(on_event=log),
    )
    assert isinstance(outcome, RunSuccess) and outcome.output == "done"
    assert ran == ["read:a"]
    denial = model.requests[1].messages[-1]
    assert isinstance(denial, ToolResultMessage) and denial.is_error
    assert "denied" in denial.content and "deny-list" in denial.content
    decisions = log.of(RunEventType.POLICY_DECISION)
    assert [d.payload["verdict"] for d in decisions] == ["deny", "allow"]
    assert log.of(RunEventType.TOOL_RESULT)[0].payload["error_kind"] == "denied"


async def test_argument_constraint_blocks_only_bad_arguments() -> None:
    outcome, _ = await run_with(
        Policy(constraints={"read_file": [no_etc]}),
        [calls(call("read_file", "c1", path="/etc/passwd"), call("read_file", "c2", path="notes")), answer("ok")],
    )
    assert isinstance(outcome, RunSuccess)
    assert ran == ["read:notes"]


async def test_repeated_denials_end_the_run_with_policy_denied() -> None:
    outcome, model = await run_with(
        Policy(deny={"delete_file"}),
        [calls(call("delete_file", f"c{i}", path="a")) for i in range(3)],
        max_denied_calls=2,
    )
    assert isinstance(outcome, RunFailure) and isinstance(outcome.error, PolicyDenied)
    assert outcome.error.kind == "policy_denied"
    assert outcome.steps == 3 and len(model.requests) == 3
    assert ran == []


async def test_approval_required_without_approver_is_denied() -> None:
    outcome, model = await run_with(
        Policy(require_approval={"delete_file"}), [calls(call("delete_file", path="a")), answer("gave up")]
    )
    assert isinstance(outcome, RunSuccess)
    assert ran == []
    result = model.requests[1].messages[-1]
    assert isinstance(result, ToolResultMessage) and "no approver is configured" in result.content


async def test_approver_decides_each_call() -> None:
    asked: list[tuple[str, PolicyVerdict]] = []

    async def approve(tool_call: ToolCall, decision: PolicyDecision) -> bool:
        asked.append((tool_call.arguments["path"], decision.verdict))
        return tool_call.arguments["path"] == "tmp"

    log = EventLog()
    outcome, model = await run_with(
        Policy(require_approval={"delete_file"}),
        [calls(call("delete_file", "c1", path="tmp"), call("delete_file", "c2", path="home")), answer("ok")],
        RunHooks(on_event=log, approve=approve),
    )
    assert isinstance(outcome, RunSuccess)
    assert asked == [("tmp", PolicyVerdict.APPROVAL_REQUIRED), ("home", PolicyVerdict.APPROVAL_REQUIRED)]
    assert ran == ["delete:tmp"]
    payloads = [e.payload for e in log.of(RunEventType.POLICY_DECISION)]
    assert [(p["verdict"], p["approved"], p["requested_verdict"]) for p in payloads] == [
        ("allow", True, "approval_required"),
        ("deny", False, "approval_required"),
    ]
    refused = model.requests[1].messages[-1]
    assert isinstance(refused, ToolResultMessage) and "approver refused" in refused.content
