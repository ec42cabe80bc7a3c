"""Persistence: the schema (SQLModel tables + Alembic migrations) and the task store."""
