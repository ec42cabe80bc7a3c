"""A run seeded with earlier conversation (``Agent.run(history=...)``), and the window over it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agentkit import Agent, AgentDefinition, Checkpoint, ConversationWindow, RunSuccess
from agentkit.errors import UserError
from agentkit.hooks import RunHooks
from agentkit.memory import message_tokens
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResultMessage, UserMessage
from agentkit.models.base import ModelResponse
from agentkit.testing import FunctionModel, ScriptedModel
from tests.agentkit.helpers import answer, call, calls

SYSTEM = SystemMessage(content="be brief")
GOAL = UserMessage(content="and now?")


def turn(i: int, size: int = 40) -> list[Message]:
    return [UserMessage(content=f"question {i} " + "q" * size), AssistantMessage(content=f"answer {i} " + "a" * size)]


def tokens(messages: Sequence[Message]) -> int:
    return sum(message_tokens(m) for m in messages)


async def test_history_goes_between_the_instructions_and_the_goal() -> None:
    model = ScriptedModel(["fine"])
    history = [*turn(1), *turn(2)]
    outcome = await Agent(AgentDefinition(name="a", instructions="be brief"), model=model).run(
        "and now?", history=history
    )
    assert isinstance(outcome, RunSuccess)
    sent = list(model.requests[0].messages)
    assert sent == [SYSTEM, *history, GOAL]
    assert list(outcome.messages) == [SYSTEM, *history, GOAL, AssistantMessage(content="fine")]


async def test_the_window_drops_the_oldest_turns_whole_and_keeps_the_goal() -> None:
    history = [*turn(1), *turn(2), *turn(3)]
    budget = tokens([SYSTEM, *turn(3), GOAL]) + 5
    window = ConversationWindow(max_tokens=budget)
    fitted = await window.fit([SYSTEM, *history, GOAL], history=len(history))
    assert fitted == [SYSTEM, *turn(3), GOAL]
    # Without the count, the window would take turn 1's question for the goal and keep it.
    assert (await window.fit([SYSTEM, *history, GOAL]))[1] == turn(1)[0]


async def test_earlier_turns_go_before_the_runs_own_steps() -> None:
    history = [*turn(1), *turn(2)]
    step = [
        AssistantMessage(tool_calls=(ToolCall(id="t1", name="lookup", arguments={"q": "x"}),)),
        ToolResultMessage(tool_call_id="t1", name="lookup", content="y" * 400),
    ]
    messages = [SYSTEM, *history, GOAL, *step]
    fitted = await ConversationWindow(max_tokens=tokens([SYSTEM, GOAL, *step]) + 5).fit(messages, history=4)
    assert fitted == [SYSTEM, GOAL, *step]


async def test_a_summary_of_dropped_turns_comes_before_the_kept_ones() -> None:
    history = [*turn(1), *turn(2), *turn(3)]
    window = ConversationWindow(
        max_tokens=tokens([SYSTEM, *turn(3), GOAL]) + 30, summariser=lambda dropped: f"{len(dropped)} messages"
    )
    fitted = await window.fit([SYSTEM, *history, GOAL], history=len(history))
    assert fitted == [
        SYSTEM,
        UserMessage(content="Summary of the earlier conversation:\n4 messages"),
        *turn(3),
        GOAL,
    ]


async def test_a_resumed_run_keeps_its_history_and_its_window_knows_the_goal() -> None:
    history = [*turn(1, size=400), *turn(2, size=400)]
    checkpoints: list[Checkpoint] = []

    async def keep(checkpoint: Checkpoint) -> None:
        checkpoints.append(checkpoint)

    async def lookup(q: str) -> str:
        return "found"

    budget = 120
    definition = AgentDefinition(
        name="a", instructions="be brief", tools=[lookup], memory=ConversationWindow(max_tokens=budget)
    )
    first = ScriptedModel([calls(call("lookup", q="x")), ModelResponse(text="never")])
    stop_after_step = RunHooks(on_checkpoint=keep, is_cancelled=lambda: bool(checkpoints))
    await Agent(definition, model=first).run("and now?", history=history, hooks=stop_after_step)
    assert checkpoints and checkpoints[0].history_messages == len(history)

    # Resumed (e.g. on another worker): the checkpoint's messages hold the history, and the window still
    # pins this run's goal, not the first turn's question.
    resumed = FunctionModel(lambda request: answer("done"))
    outcome = await Agent(definition, model=resumed).run("and now?", resume=checkpoints[0])
    assert isinstance(outcome, RunSuccess)
    sent = list(resumed.requests[0].messages)
    assert GOAL in sent
    assert turn(1)[0] not in sent


async def test_history_holds_only_user_and_assistant_messages() -> None:
    with pytest.raises(UserError, match="user and assistant messages only"):
        await Agent(AgentDefinition(name="a"), model=ScriptedModel(["x"])).run("goal", history=[SYSTEM])
