"""A workflow's shape, checked at submission, and its goal templates, rendered when a step starts.

A step's goal may quote what earlier steps produced::

    {{steps.research.result}}          the step's result (text as is, anything else as JSON)
    {{steps.research.result.title}}    a field of a JSON result (a list index is a number: .items.0)
    {{steps.research.status}}          completed, failed or cancelled
    {{steps.research.error}}           the error message of a step that failed (empty otherwise)

Only ``{{ steps.… }}`` is a template: any other ``{{…}}`` in a goal is kept as
written. A step may quote only its ancestors (the steps it depends on,
directly or through others), since only they are sure to have ended when it
starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ops_core.errors import InvalidRequest

MAX_STEPS = 100
MAX_STEP_NAME_CHARS = 100
STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_STEP_NAME = re.compile(STEP_NAME_PATTERN)
# One quoted value, and a whole rendered goal, are cut to these lengths (with a marker saying so).
MAX_QUOTED_CHARS = 50_000
MAX_RENDERED_GOAL_CHARS = 200_000

_TEMPLATE = re.compile(r"\{\{\s*(steps\.[^{}]*?)\s*\}\}")
_REFERENCE = re.compile(r"steps\.([A-Za-z_][A-Za-z0-9_-]*)\.(result|status|error)((?:\.[A-Za-z0-9_-]+)*)")


class StepShape(Protocol):
    """What validation needs of a step (the API's schema has these, and more)."""

    @property
    def name(self) -> str: ...

    @property
    def goal(self) -> str: ...

    @property
    def depends_on(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``{{steps.NAME.FIELD.PATH}}`` in a goal."""

    text: str
    step: str
    field: str
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What a started step left for its dependents' goals."""

    status: str
    result: Any = None
    error: str | None = None


def references(step_name: str, goal: str) -> list[Reference]:
    """The templates in ``goal``; a ``{{steps.…}}`` that is not a valid reference is an error."""
    found: list[Reference] = []
    for match in _TEMPLATE.finditer(goal):
        inner = match.group(1)
        ref = _REFERENCE.fullmatch(inner)
        if ref is None:
            raise InvalidRequest(
                f"step {step_name!r}: {match.group(0)!r} is not a valid reference; use {{{{steps.NAME.result}}}},"
                " {{steps.NAME.result.FIELD}}, {{steps.NAME.status}} or {{steps.NAME.error}}"
            )
        path = tuple(part for part in ref.group(3).split(".") if part)
        if path and ref.group(2) != "result":
            raise InvalidRequest(f"step {step_name!r}: {match.group(0)!r}: only result has fields")
        found.append(Reference(match.group(0), ref.group(1), ref.group(2), path))
    return found


def validate(steps: Sequence[StepShape]) -> list[str]:
    """Check the workflow's shape; its step names in an order where every step follows its parents.

    Raises :class:`InvalidRequest` naming the step at fault: a duplicate or
    malformed name, an unknown or repeated dependency, a cycle, or a template
    that quotes a step which is not an ancestor.
    """
    if not steps:
        raise InvalidRequest("a workflow needs at least one step")
    if len(steps) > MAX_STEPS:
        raise InvalidRequest(f"a workflow has at most {MAX_STEPS} steps; this one has {len(steps)}")
    by_name: dict[str, StepShape] = {}
    for step in steps:
        if len(step.name) > MAX_STEP_NAME_CHARS or not _STEP_NAME.fullmatch(step.name):
            raise InvalidRequest(
                f"step name {step.name[:MAX_STEP_NAME_CHARS]!r}: use at most {MAX_STEP_NAME_CHARS} letters, digits,"
                " _ and -, starting with a letter or _"
            )
        if step.name in by_name:
            raise InvalidRequest(f"step {step.name!r} is named twice")
        by_name[step.name] = step
    for step in steps:
        seen: set[str] = set()
        for parent in step.depends_on:
            if parent == step.name:
                raise InvalidRequest(f"step {step.name!r} depends on itself")
            if parent not in by_name:
                raise InvalidRequest(f"step {step.name!r} depends on unknown step {parent!r}")
            if parent in seen:
                raise InvalidRequest(f"step {step.name!r} lists {parent!r} in depends_on twice")
            seen.add(parent)
    order = _topological(steps, by_name)
    ancestors: dict[str, set[str]] = {}
    for name in order:
        parents = by_name[name].depends_on
        ancestors[name] = set(parents).union(*(ancestors[parent] for parent in parents))
    for step in steps:
        for ref in references(step.name, step.goal):
            if ref.step not in by_name:
                raise InvalidRequest(f"step {step.name!r}: {ref.text!r} quotes unknown step {ref.step!r}")
            if ref.step not in ancestors[step.name]:
                raise InvalidRequest(
                    f"step {step.name!r}: {ref.text!r} quotes step {ref.step!r}, which is not among its ancestors;"
                    f" add {ref.step!r} to its depends_on"
                )
    return order


def _topological(steps: Sequence[StepShape], by_name: Mapping[str, StepShape]) -> list[str]:
    """Kahn's order; on a cycle, an error naming the steps that form it."""
    waiting = {step.name: len(step.depends_on) for step in steps}
    children: dict[str, list[str]] = {step.name: [] for step in steps}
    for step in steps:
        for parent in step.depends_on:
            children[parent].append(step.name)
    ready = [step.name for step in steps if not step.depends_on]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if not waiting[child]:
                ready.append(child)
    if len(order) < len(steps):
        cycle = _a_cycle({name for name, left in waiting.items() if left}, by_name)
        raise InvalidRequest(f"step {cycle[0]!r} is in a cycle: {' → '.join(repr(n) for n in cycle)}")
    return order


def _a_cycle(stuck: set[str], by_name: Mapping[str, StepShape]) -> list[str]:
    """One cycle among ``stuck`` (the steps Kahn's order could not place; each has a stuck parent)."""
    name = min(stuck)
    path: list[str] = []
    while name not in path:
        path.append(name)
        name = min(parent for parent in by_name[name].depends_on if parent in stuck)
    cycle = path[path.index(name) :]
    # Written in the direction work flows (parent → child), from its first name in sort order.
    cycle.reverse()
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]


def render(step_name: str, goal: str, outcomes: Mapping[str, StepOutcome]) -> str:
    """``goal`` with every reference replaced by what the step it names left."""

    def value(match: re.Match[str]) -> str:
        ref = references(step_name, match.group(0))[0]
        outcome = outcomes.get(ref.step)
        if outcome is None:
            return ""
        if ref.field == "status":
            return outcome.status
        if ref.field == "error":
            return outcome.error or ""
        return _quoted(_dig(outcome.result, ref.path))

    rendered = _TEMPLATE.sub(value, goal)
    return _cut(rendered, MAX_RENDERED_GOAL_CHARS)


def _dig(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _quoted(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _cut(text, MAX_QUOTED_CHARS)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters cut]"
