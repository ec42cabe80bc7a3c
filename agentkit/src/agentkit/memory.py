"""Short-term memory (a conversation window) and long-term memory (searchable records).

Short-term: :class:`ConversationWindow` trims what the model is sent to a
token budget. The full history is kept by the run (and its checkpoints); only
the request is trimmed. Leading system messages and the goal are pinned, and
an assistant message with tool calls travels with its tool results as one
unit, because providers reject a tool result whose call is missing.

Long-term: :class:`LongTermMemory` is what the agent searches for the goal
before its first step. :class:`InMemoryMemory` is for tests and scripts;
:class:`StoreBackedMemory` keeps records in a host-provided
:class:`MemoryStore` (ops-core backs it with PostgreSQL; standalone users get
:class:`JsonlFileMemoryStore`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolResultMessage, UserMessage

__all__ = [
    "ConversationWindow",
    "InMemoryMemory",
    "JsonlFileMemoryStore",
    "LongTermMemory",
    "MemoryRecord",
    "MemoryStore",
    "StoreBackedMemory",
    "Summariser",
    "TokenCounter",
    "estimate_tokens",
    "message_tokens",
    "score_overlap",
]

TokenCounter = Callable[[str], int]
Summariser = Callable[[Sequence[Message]], Awaitable[str] | str]

_MESSAGE_OVERHEAD = 4  # role markers and separators every provider adds per message


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate: about four characters per token."""
    return math.ceil(len(text) / 4)


def message_tokens(message: Message, counter: TokenCounter = estimate_tokens) -> int:
    tokens = _MESSAGE_OVERHEAD + counter(message.content or "")
    if isinstance(message, AssistantMessage):
        for call in message.tool_calls:
            tokens += counter(call.name) + counter(json.dumps(call.arguments, default=str))
    return tokens


def _units(messages: Sequence[Message]) -> list[list[Message]]:
    """Group messages so a tool-calling assistant message and its results stay together."""
    units: list[list[Message]] = []
    for message in messages:
        if isinstance(message, ToolResultMessage) and units and _opens_exchange(units[-1]):
            units[-1].append(message)
        else:
            units.append([message])
    return units


def _opens_exchange(unit: list[Message]) -> bool:
    first = unit[0]
    return isinstance(first, AssistantMessage) and bool(first.tool_calls)


def _turns(messages: Sequence[Message]) -> list[list[Message]]:
    """Earlier turns of a conversation as units: a user message with everything up to the next one,
    so a turn is dropped whole and what is sent never opens with an orphaned answer."""
    units: list[list[Message]] = []
    for message in messages:
        if isinstance(message, UserMessage) or not units:
            units.append([message])
        else:
            units[-1].append(message)
    return units


@dataclass(frozen=True)
class ConversationWindow:
    """Keeps a conversation within ``max_tokens``, dropping (or summarising) the oldest turns.

    Never dropped: the leading system messages, the run's goal (its user
    message) when ``pin_goal`` is set, and the newest unit, even when they
    alone exceed the budget, because a request without them is meaningless.
    With a ``summariser`` the dropped turns are replaced by one user message
    holding their summary; ``summary_reserve`` tokens are kept free for it.

    ``history`` counts the messages of earlier conversation (a session's
    turns) between the system messages and the goal. They go first, a turn
    at a time, before any of the run's own steps.
    """

    max_tokens: int
    counter: TokenCounter = estimate_tokens
    summariser: Summariser | None = None
    pin_goal: bool = True
    summary_reserve: int = 200

    async def fit(self, messages: Sequence[Message], *, history: int = 0) -> list[Message]:
        system: list[Message] = []
        rest = list(messages)
        while rest and isinstance(rest[0], SystemMessage):
            system.append(rest.pop(0))
        earlier, rest = rest[:history], rest[history:]
        goal: list[Message] = []
        if self.pin_goal and rest and isinstance(rest[0], UserMessage):
            goal.append(rest.pop(0))
        earlier_units = _turns(earlier)
        units = earlier_units + _units(rest)

        def size(msgs: Sequence[Message]) -> int:
            return sum(message_tokens(m, self.counter) for m in msgs)

        budget = self.max_tokens - size(system) - size(goal)
        total = sum(size(u) for u in units)
        if total <= budget:
            return list(messages)
        if self.summariser is not None:
            budget -= self.summary_reserve
        dropped: list[Message] = []
        dropped_units = 0
        while len(units) > 1 and total > budget:
            unit = units.pop(0)
            dropped_units += 1
            total -= size(unit)
            dropped.extend(unit)
        kept_earlier = [m for unit in units[: max(0, len(earlier_units) - dropped_units)] for m in unit]
        kept_rest = [m for unit in units[max(0, len(earlier_units) - dropped_units) :] for m in unit]
        summary: list[Message] = []
        if dropped and self.summariser is not None:
            text = self.summariser(dropped)
            if inspect.isawaitable(text):
                text = await text
            summary = [UserMessage(content=f"Summary of the earlier conversation:\n{text}")]
        if dropped_units > len(earlier_units) or not earlier_units:
            # The run's own steps were dropped too: the summary follows the goal, as without history.
            return [*system, *kept_earlier, *goal, *summary, *kept_rest]
        return [*system, *summary, *kept_earlier, *goal, *kept_rest]


class MemoryRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    score: float = 0.0


_TERM_RE = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
        "your",
    ]
)


def _terms(text: str) -> set[str]:
    return {t for t in _TERM_RE.findall(text.lower()) if t not in _STOPWORDS}


def score_overlap(query: str, text: str) -> float:
    """Fraction of the query's terms found in ``text`` (0 when nothing matches)."""
    wanted = _terms(query)
    if not wanted:
        return 0.0
    return len(wanted & _terms(text)) / len(wanted)


def _rank(query: str, records: Sequence[MemoryRecord], limit: int) -> list[MemoryRecord]:
    scored = [r.model_copy(update={"score": score_overlap(query, r.text)}) for r in records]
    # Newest first among equal scores: a later memory usually supersedes an older one.
    scored.sort(key=lambda r: (r.score, r.created_at), reverse=True)
    return [r for r in scored if r.score > 0][:limit]


class LongTermMemory(ABC):
    """Searchable memories that outlive a run."""

    @abstractmethod
    async def add(self, text: str, metadata: dict[str, Any] | None = None) -> MemoryRecord: ...

    @abstractmethod
    async def search(self, query: str, limit: int = 5) -> list[MemoryRecord]:
        """The most relevant records, best first, each with its ``score``; none that do not match."""


class InMemoryMemory(LongTermMemory):
    """Records in a list, ranked by term overlap."""

    def __init__(self, records: Sequence[MemoryRecord] = ()) -> None:
        self.records: list[MemoryRecord] = list(records)

    async def add(self, text: str, metadata: dict[str, Any] | None = None) -> MemoryRecord:
        record = MemoryRecord(text=text, metadata=dict(metadata or {}))
        self.records.append(record)
        return record

    async def search(self, query: str, limit: int = 5) -> list[MemoryRecord]:
        return _rank(query, self.records, limit)


@runtime_checkable
class MemoryStore(Protocol):
    """Where :class:`StoreBackedMemory` keeps records; a host implements it on its own database.

    ``query`` returns candidates for ``query``: at least the best ``limit``
    matches if the store can search (e.g. full-text), or simply every record.
    The memory re-ranks them, so a store need not score anything.
    """

    async def save(self, record: MemoryRecord) -> None: ...

    async def query(self, query: str, limit: int) -> Sequence[MemoryRecord]: ...


class StoreBackedMemory(LongTermMemory):
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def add(self, text: str, metadata: dict[str, Any] | None = None) -> MemoryRecord:
        record = MemoryRecord(text=text, metadata=dict(metadata or {}))
        await self.store.save(record)
        return record

    async def search(self, query: str, limit: int = 5) -> list[MemoryRecord]:
        return _rank(query, await self.store.query(query, limit), limit)


class JsonlFileMemoryStore:
    """A :class:`MemoryStore` appending one JSON line per record to a file.

    File I/O runs in a worker thread so a slow disk never blocks the event
    loop. The lock keeps concurrent saves from interleaving their lines.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    async def save(self, record: MemoryRecord) -> None:
        line = record.model_dump_json(exclude={"score"}) + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)

    async def query(self, query: str, limit: int) -> Sequence[MemoryRecord]:
        return await asyncio.to_thread(self._load)

    def _load(self) -> list[MemoryRecord]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as fh:
            return [MemoryRecord.model_validate_json(line) for line in fh if line.strip()]
