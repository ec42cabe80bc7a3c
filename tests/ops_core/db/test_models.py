"""Derived fields of the task record."""

from __future__ import annotations

import pytest

from ops_core.db.models import Task


@pytest.mark.parametrize(
    ("max_retries", "attempts", "left"),
    [(3, 0, 3), (3, 1, 3), (3, 2, 2), (3, 4, 0), (3, 9, 0), (0, 1, 0)],
)
def test_retries_left_counts_max_retries_plus_the_first_attempt(max_retries: int, attempts: int, left: int) -> None:
    task = Task(agent="default", goal="g", model="offline:default", max_retries=max_retries, attempts=attempts)
    assert task.retries_left == left
