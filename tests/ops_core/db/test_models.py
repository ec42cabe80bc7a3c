"""The task record: derived fields, and that it matches the table it is read from."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from ops_core.db.models import EVENT_COLUMNS, TASK_COLUMNS, Task, TaskEventTable, TaskTable
from ops_core.lifecycle import TaskStatus


def _task(**overrides: object) -> Task:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "tenant": "t1",
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


def test_configured_max_retries_leaves_out_what_manual_retries_granted() -> None:
    assert _task(max_retries=5, retry_base=2).configured_max_retries == 3


def test_the_record_has_exactly_the_tables_columns() -> None:
    # Both backends read and write tasks by these names: a column missing here would be lost silently.
    assert {f.name for f in dataclasses.fields(Task)} == {c.name for c in TaskTable.__table__.columns}  # type: ignore[attr-defined]
    assert tuple(f.name for f in dataclasses.fields(Task)) == TASK_COLUMNS
    assert tuple(c.name for c in TaskEventTable.__table__.columns) == EVENT_COLUMNS  # type: ignore[attr-defined]
