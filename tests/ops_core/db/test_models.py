"""The task record: derived fields, and that it matches the table it is read from."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from ops_core.db.models import Task, TaskTable
from ops_core.lifecycle import TaskStatus


def _task(**overrides: object) -> Task:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "agent": "default",
        "goal": "g",
        "model": "offline:default",
        "status": TaskStatus.PENDING,
        "max_retries": 3,
        "timeout_seconds": 60,
        "created_at": now,
        "updated_at": now,
    }
    return Task(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("max_retries", "attempts", "left"),
    [(3, 0, 3), (3, 1, 3), (3, 2, 2), (3, 4, 0), (3, 9, 0), (0, 1, 0)],
)
def test_retries_left_counts_max_retries_plus_the_first_attempt(max_retries: int, attempts: int, left: int) -> None:
    assert _task(max_retries=max_retries, attempts=attempts).retries_left == left


def test_configured_max_retries_leaves_out_what_manual_retries_granted() -> None:
    assert _task(max_retries=5, retry_base=2).configured_max_retries == 3


def test_the_record_has_exactly_the_tables_columns() -> None:
    # The store builds records with Task(**row): a column missing here would fail every read.
    assert {f.name for f in dataclasses.fields(Task)} == {c.name for c in TaskTable.__table__.columns}  # type: ignore[attr-defined]
