from __future__ import annotations

from agentkit.memory import StoreBackedMemory
from ops_core.db.memory import DatabaseMemoryStore
from ops_core.db.store import TaskStore


async def test_memory_round_trip_per_namespace(store: TaskStore) -> None:
    memory = StoreBackedMemory(DatabaseMemoryStore(store.engine, "researcher"))
    other = StoreBackedMemory(DatabaseMemoryStore(store.engine, "writer"))
    saved = await memory.add("PostgreSQL keeps the task table", {"source": "notes"})
    await memory.add("RabbitMQ delivers the messages")
    await other.add("PostgreSQL is not this agent's memory")
    found = await memory.search("where is the task table kept? postgresql", limit=5)
    assert found and found[0].id == saved.id and found[0].metadata == {"source": "notes"}
    assert found[0].created_at == saved.created_at
    assert all("agent's" not in r.text for r in found)
    assert await memory.search("zebra", limit=5) == []
