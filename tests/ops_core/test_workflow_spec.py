"""A workflow's shape checked at submission, and goal templates rendered from parents' outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from ops_core.errors import InvalidRequest
from ops_core.workflow_spec import MAX_QUOTED_CHARS, MAX_STEPS, StepOutcome, references, render, validate


@dataclass
class S:
    name: str
    goal: str = "do it"
    depends_on: Sequence[str] = field(default_factory=list)


def refused(steps: list[S]) -> str:
    with pytest.raises(InvalidRequest) as caught:
        validate(steps)
    return caught.value.message


def test_a_diamond_is_ordered_parents_first() -> None:
    order = validate(
        [S("d", "{{steps.b.result}} {{steps.a.result}}", ["b", "c"]), S("b", "", ["a"]), S("c", "", ["a"]), S("a")]
    )
    assert order.index("a") < order.index("b") < order.index("d") and order.index("c") < order.index("d")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([S("a"), S("a")], "step 'a' is named twice"),
        ([S("a", depends_on=["ghost"])], "step 'a' depends on unknown step 'ghost'"),
        ([S("a", depends_on=["a"])], "step 'a' depends on itself"),
        ([S("a"), S("b", depends_on=["a", "a"])], "step 'b' lists 'a' in depends_on twice"),
        ([S("1bad")], "step name '1bad'"),
        ([S("a", "{{steps.ghost.result}}")], "step 'a': '{{steps.ghost.result}}' quotes unknown step 'ghost'"),
        ([S("a"), S("b", "{{steps.a.result}}")], "step 'b': '{{steps.a.result}}' quotes step 'a', which is not"),
        ([S("a", "{{steps.a.result}}")], "quotes step 'a', which is not among its ancestors"),
        ([S("a"), S("b", "{{steps.a.output}}", ["a"])], "step 'b': '{{steps.a.output}}' is not a valid reference"),
        ([S("a"), S("b", "{{steps.a.status.x}}", ["a"])], "only result has fields"),
    ],
)
def test_bad_shapes_are_refused_naming_the_step(steps: list[S], message: str) -> None:
    assert message in refused(steps)


def test_a_cycle_is_named() -> None:
    message = refused([S("root"), S("a", depends_on=["root", "c"]), S("b", depends_on=["a"]), S("c", depends_on=["b"])])
    assert message == "step 'a' is in a cycle: 'a' → 'b' → 'c' → 'a'"
    assert refused([S("x", depends_on=["y"]), S("y", depends_on=["x"])]).startswith("step 'x' is in a cycle")


def test_a_step_may_quote_any_ancestor_not_only_its_parents() -> None:
    validate([S("a"), S("b", depends_on=["a"]), S("c", "{{steps.a.result}}", ["b"])])
    assert "not among its ancestors" in refused(
        [S("a"), S("side"), S("b", depends_on=["a"]), S("c", "{{steps.side.result}}", ["b"])]
    )


def test_too_many_steps_are_refused() -> None:
    assert f"at most {MAX_STEPS} steps" in refused([S(f"s{i}") for i in range(MAX_STEPS + 1)])


def test_other_braces_are_not_templates() -> None:
    assert references("a", "format {{name}} and {{ other.thing }}") == []
    assert render("a", "keep {{name}} as is", {}) == "keep {{name}} as is"


def test_render_quotes_results_fields_status_and_errors() -> None:
    outcomes = {
        "text": StepOutcome("completed", "plain words"),
        "obj": StepOutcome("completed", {"title": "T", "items": [{"n": 1}, {"n": 2}]}),
        "bad": StepOutcome("failed", None, "it broke"),
    }
    goal = (
        "{{steps.text.result}} | {{ steps.obj.result.title }} | {{steps.obj.result.items.1.n}} |"
        " {{steps.obj.result}} | {{steps.bad.status}}: {{steps.bad.error}} | [{{steps.bad.result}}] |"
        " [{{steps.obj.result.missing}}] [{{steps.text.error}}]"
    )
    assert render("x", goal, outcomes) == (
        'plain words | T | 2 | {"title": "T", "items": [{"n": 1}, {"n": 2}]} | failed: it broke | [] | [] []'
    )


def test_a_huge_result_is_cut_with_a_marker() -> None:
    rendered = render("x", "<{{steps.a.result}}>", {"a": StepOutcome("completed", "y" * (MAX_QUOTED_CHARS + 10))})
    assert rendered.startswith("<" + "y" * MAX_QUOTED_CHARS) and rendered.endswith("[10 more characters cut]>")
