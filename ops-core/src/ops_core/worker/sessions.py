"""What a session's task brings to its run: the conversation so far, within a memory budget.

The turns are the session's completed tasks before this one (db/sessions.py),
each its goal as the user's message and its result as the assistant's. A
session's tasks run one at a time in submission order, so when this task was
claimed every earlier one had finished and its turn was written.
"""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy.ext.asyncio import AsyncEngine

from agentkit import Agent, ConversationWindow
from agentkit.messages import AssistantMessage, Message, UserMessage, goal_text
from ops_core.db.models import Task
from ops_core.db.sessions import SessionStore

# The newest turns read for a run; the memory window then keeps what fits its token budget.
MAX_HISTORY_TURNS = 200


async def conversation(engine: AsyncEngine, task: Task) -> list[Message]:
    """The session's earlier turns as messages, oldest first."""
    messages: list[Message] = []
    for turn in await SessionStore(engine).history(task, limit=MAX_HISTORY_TURNS):
        messages.append(UserMessage(content=goal_text(turn.goal, turn.input)))
        messages.append(AssistantMessage(content=answer_text(turn.result)))
    return messages


def answer_text(result: object) -> str:
    """A stored result as the assistant said it: text as is, a structured output as its JSON."""
    return result if isinstance(result, str) else json.dumps(result, sort_keys=True, default=str)


def conversing(agent: Agent, memory_tokens: int) -> Agent:
    """``agent``, with a memory window of ``memory_tokens`` if its definition sets none: a session grows
    without end, and every request must stay within what a model takes."""
    if agent.definition.memory is not None:
        return agent
    window = ConversationWindow(max_tokens=memory_tokens)
    return Agent(dataclasses.replace(agent.definition, memory=window), model=agent.model)
