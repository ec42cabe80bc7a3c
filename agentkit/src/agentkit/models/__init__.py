"""LLM clients and the interface they share."""
