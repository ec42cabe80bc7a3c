"""The workflow's and steps' transition tables, and the plan: what a workflow's steps call for."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from ops_core.lifecycle import TaskStatus
from ops_core.workflow_lifecycle import (
    STEP_TRANSITIONS,
    IllegalTransition,
    StepState,
    StepStatus,
    WorkflowStatus,
    check_step,
    check_workflow,
    plan,
    step_sources,
    workflow_sources,
)

W, S, T = WorkflowStatus, StepStatus, TaskStatus


def st(
    name: str,
    status: StepStatus = S.BLOCKED,
    depends_on: Sequence[str] = (),
    task: TaskStatus | None = None,
    *,
    cont: bool = False,
    cancel_requested: bool = False,
) -> StepState:
    task_id = uuid.uuid5(uuid.NAMESPACE_OID, name) if task is not None else None
    return StepState(
        name=name,
        status=status,
        depends_on=depends_on,
        continue_on_failure=cont,
        task_id=task_id,
        task_status=task,
        task_cancel_requested=cancel_requested,
        task_error="boom" if task is T.FAILED else None,
    )


def test_the_tables() -> None:
    check_workflow(W.RUNNING, W.FAILED)
    with pytest.raises(IllegalTransition):
        check_workflow(W.COMPLETED, W.RUNNING)
    with pytest.raises(IllegalTransition):
        check_step(S.SKIPPED, S.STARTED)
    check_step(S.BLOCKED, S.STARTED)
    assert workflow_sources(W.CANCELLED) == {W.RUNNING}
    assert step_sources(S.COMPLETED) == {S.STARTED}
    settled = {S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED}
    assert not [move for move in STEP_TRANSITIONS if move[0] in settled], "a settled step never moves again"


def test_roots_start_and_children_wait() -> None:
    decided = plan(W.RUNNING, [st("a"), st("b", depends_on=["a"])])
    assert decided.start == ["a"] and decided.status is None


def test_a_child_starts_only_when_every_parent_completed() -> None:
    steps = [
        st("a", S.STARTED, task=T.COMPLETED),
        st("b", S.STARTED, task=T.RUNNING),
        st("c", depends_on=["a", "b"]),
    ]
    decided = plan(W.RUNNING, steps)
    assert decided.settle == {"a": S.COMPLETED} and decided.start == []
    steps[1] = st("b", S.STARTED, task=T.COMPLETED)
    assert plan(W.RUNNING, steps).start == ["c"]


def test_a_task_back_to_pending_is_not_an_end() -> None:
    decided = plan(W.RUNNING, [st("a", S.STARTED, task=T.PENDING), st("b", depends_on=["a"])])
    assert not decided.changes_anything


def test_a_failure_fails_the_workflow_skips_and_cancels() -> None:
    steps = [
        st("a", S.STARTED, task=T.FAILED),
        st("b", S.STARTED, task=T.RUNNING),
        st("c", S.STARTED, task=T.RUNNING, cancel_requested=True),
        st("d", depends_on=["a"]),
    ]
    decided = plan(W.RUNNING, steps)
    assert decided.status is W.FAILED and decided.reason == "step 'a' failed: boom"
    assert decided.skip == ["d"] and decided.cancel == [steps[1].task_id]  # c's cancel was already asked


def test_continue_on_failure_counts_as_done() -> None:
    steps = [st("a", S.STARTED, task=T.CANCELLED, cont=True), st("b", depends_on=["a"])]
    decided = plan(W.RUNNING, steps)
    assert decided.status is None and decided.start == ["b"]
    done = plan(W.RUNNING, [st("a", S.FAILED, cont=True), st("b", S.STARTED, ["a"], T.COMPLETED)])
    assert done.status is W.COMPLETED


def test_an_ended_workflow_starts_nothing_and_settles_what_ends() -> None:
    steps = [st("a", S.STARTED, task=T.COMPLETED), st("b", depends_on=["a"]), st("c", S.STARTED, task=T.RUNNING)]
    decided = plan(W.CANCELLED, steps)
    assert decided.start == [] and decided.status is None
    assert decided.settle == {"a": S.COMPLETED} and decided.skip == ["b"] and decided.cancel == [steps[2].task_id]
