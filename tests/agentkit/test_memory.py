from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agentkit.agent import Agent, AgentDefinition
from agentkit.memory import (
    ConversationWindow,
    InMemoryMemory,
    JsonlFileMemoryStore,
    MemoryRecord,
    MemoryStore,
    StoreBackedMemory,
    estimate_tokens,
    message_tokens,
    score_overlap,
)
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResultMessage, UserMessage
from agentkit.models.base import ModelRequest, ModelResponse
from agentkit.testing import FunctionModel

SYSTEM = SystemMessage(content="You are terse. " * 20)
GOAL = UserMessage(content="the goal")


def exchange(i: int, size: int = 200) -> list[Message]:
    return [
        AssistantMessage(tool_calls=(ToolCall(id=f"t{i}", name="lookup", arguments={"q": "x" * size}),)),
        ToolResultMessage(tool_call_id=f"t{i}", name="lookup", content="y" * size),
    ]


def tokens(messages: Sequence[Message]) -> int:
    return sum(message_tokens(m) for m in messages)


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2


async def test_window_keeps_everything_when_it_fits() -> None:
    messages: list[Message] = [SYSTEM, GOAL, *exchange(1)]
    assert await ConversationWindow(max_tokens=10_000).fit(messages) == messages


async def test_window_drops_oldest_turns_but_never_system_goal_or_split_exchanges() -> None:
    messages: list[Message] = [SYSTEM, GOAL, *exchange(1), UserMessage(content="more"), *exchange(2), *exchange(3)]
    budget = tokens([SYSTEM, GOAL, *exchange(3)]) + 10
    fitted = await ConversationWindow(max_tokens=budget).fit(messages)
    assert fitted == [SYSTEM, GOAL, *exchange(3)]
    assert tokens(fitted) <= budget
    # Every kept tool result still has its call right before it.
    for i, m in enumerate(fitted):
        if isinstance(m, ToolResultMessage):
            prev = fitted[i - 1]
            assert isinstance(prev, AssistantMessage) and prev.tool_calls[0].id == m.tool_call_id


async def test_window_keeps_newest_exchange_whole_even_over_budget() -> None:
    messages: list[Message] = [SYSTEM, GOAL, *exchange(1), *exchange(2, size=4000)]
    fitted = await ConversationWindow(max_tokens=50).fit(messages)
    assert fitted == [SYSTEM, GOAL, *exchange(2, size=4000)]


async def test_window_with_custom_counter_and_summariser() -> None:
    summarised: list[list[Message]] = []

    async def summarise(dropped: Sequence[Message]) -> str:
        summarised.append(list(dropped))
        return f"{len(dropped)} earlier messages"

    turns: list[Message] = [UserMessage(content=f"turn {i}") for i in range(6)]
    window = ConversationWindow(max_tokens=4 * 5, counter=lambda _text: 0, summariser=summarise, summary_reserve=4)
    fitted = await window.fit([SYSTEM, GOAL, *turns])
    # Overhead alone is 4 per message: pinned 8, reserve 4, leaves room for 2 turns.
    assert fitted[:2] == [SYSTEM, GOAL]
    assert fitted[2] == UserMessage(content="Summary of the earlier conversation:\n4 earlier messages")
    assert fitted[3:] == turns[4:]
    assert summarised == [turns[:4]]


def test_score_overlap() -> None:
    assert score_overlap("favourite colour", "Ada's favourite colour is green") == 1.0
    assert score_overlap("favourite colour", "Ada likes tea") == 0.0
    assert score_overlap("the a of", "anything") == 0.0


async def test_in_memory_memory_ranks_by_overlap() -> None:
    memory = InMemoryMemory()
    await memory.add("Ada's favourite colour is green", {"who": "ada"})
    await memory.add("Ada drinks tea")
    await memory.add("the deploy window is Tuesday")
    found = await memory.search("what is Ada's favourite colour", limit=5)
    assert [r.text for r in found] == ["Ada's favourite colour is green", "Ada drinks tea"]
    assert found[0].score > found[1].score > 0
    assert found[0].metadata == {"who": "ada"}
    assert len(await memory.search("ada", limit=1)) == 1


async def test_jsonl_store_backed_memory_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "mem" / "memories.jsonl"
    store = JsonlFileMemoryStore(path)
    assert isinstance(store, MemoryStore)
    assert await StoreBackedMemory(store).search("anything") == []
    await StoreBackedMemory(store).add("the staging database is db-7", {"source": "ops"})
    reopened = StoreBackedMemory(JsonlFileMemoryStore(path))
    found = await reopened.search("which staging database")
    assert [(r.text, r.metadata) for r in found] == [("the staging database is db-7", {"source": "ops"})]


async def test_host_store_protocol_is_enough() -> None:
    class ListStore:
        def __init__(self) -> None:
            self.saved: list[MemoryRecord] = []

        async def save(self, record: MemoryRecord) -> None:
            self.saved.append(record)

        async def query(self, query: str, limit: int) -> Sequence[MemoryRecord]:
            return self.saved

    store = ListStore()
    memory = StoreBackedMemory(store)
    await memory.add("invoices are due on the 5th")
    assert (await memory.search("when are invoices due"))[0].text == "invoices are due on the 5th"


async def test_retrieved_memories_reach_the_model() -> None:
    memory = InMemoryMemory()
    await memory.add("The customer Ada prefers invoices in EUR")
    await memory.add("Unrelated note about parking")

    def reply(request: ModelRequest) -> ModelResponse:
        return ModelResponse(text="ok")

    model = FunctionModel(reply)
    agent = Agent(AgentDefinition(name="m", instructions="Be exact."), model=model)
    await agent.run("Draft an invoice for Ada", long_term_memory=memory)
    system = model.requests[0].messages[0]
    assert isinstance(system, SystemMessage)
    assert system.content.startswith("Be exact.")
    assert "Relevant memories" in system.content
    assert "- The customer Ada prefers invoices in EUR" in system.content
    assert "parking" not in system.content


async def test_agent_sends_trimmed_window_but_keeps_full_history() -> None:
    from agentkit.tools import tool

    @tool
    def lookup(q: str) -> str:
        """Look up."""
        return "r" * 400

    script = iter(
        [
            ModelResponse(tool_calls=(ToolCall(id="a", name="lookup", arguments={"q": "1"}),)),
            ModelResponse(tool_calls=(ToolCall(id="b", name="lookup", arguments={"q": "2"}),)),
            ModelResponse(text="done"),
        ]
    )
    model = FunctionModel(lambda request: next(script))
    window = ConversationWindow(max_tokens=200)
    agent = Agent(AgentDefinition(name="m", instructions="sys", tools=[lookup], memory=window), model=model)
    outcome = await agent.run("the goal")
    last_request = list(model.requests[2].messages)
    assert len(outcome.messages) == 7  # system, goal, 2 x (call + result), answer
    assert [m.role for m in last_request] == ["system", "user", "assistant", "tool"]
    assert last_request[2] == outcome.messages[4]  # the newest exchange, whole
