"""ops-core: durable orchestration of agent runs."""
