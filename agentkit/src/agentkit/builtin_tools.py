"""Tools every agent may use: a safe calculator and the current time.

The calculator walks the parsed expression tree and only knows numbers and a
handful of operators, so there is nothing to escape from: no names, calls,
attributes or subscripts are ever looked up, and nothing is passed to
``eval``. Size limits keep a hostile expression from burning CPU or memory,
and an error message quotes at most the start of a huge argument.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentkit.errors import ToolRetry
from agentkit.tools import Tool, Toolset, tool

__all__ = [
    "MAX_EXPONENT",
    "MAX_EXPRESSION_LENGTH",
    "CalculationError",
    "builtin_toolset",
    "calculator",
    "current_time",
    "evaluate_arithmetic",
]

MAX_EXPRESSION_LENGTH = 200
MAX_EXPONENT = 1000
MAX_INT_BITS = 4096  # ~1233 decimal digits: plenty for arithmetic, cheap to compute and print
_MAX_QUOTED = 80

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculationError(ValueError):
    """The expression is not plain arithmetic or breaks a size limit."""


def evaluate_arithmetic(expression: str) -> Number:
    """Evaluate ``expression`` (numbers, + - * / // % **, unary +/-, parentheses)."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"not a valid arithmetic expression: {exc.msg}") from exc
    return _check(_eval(tree.body))


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True + True is not arithmetic anyone meant.
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        raise CalculationError(f"unsupported constant {node.value!r}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _check(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError as exc:
            raise CalculationError("division by zero") from exc
        except OverflowError as exc:
            raise CalculationError("result too large") from exc
    raise CalculationError(f"unsupported syntax: {type(node).__name__}")


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculationError(f"exponent larger than {MAX_EXPONENT}")
    # Checked before computing: 9 ** 1000 is fine, (10 ** 100) ** 1000 must never be built.
    if isinstance(base, int) and isinstance(exponent, int) and base.bit_length() * exponent > MAX_INT_BITS:
        raise CalculationError("result too large")


def _check(value: Number) -> Number:
    if isinstance(value, complex):  # (-8) ** 0.5
        raise CalculationError("result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("result too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("result is not finite")
    return value


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the result.

    Args:
        expression: Numbers with + - * / // % ** and parentheses, e.g. "(2 + 3) * 4".
    """
    try:
        return str(evaluate_arithmetic(expression))
    except CalculationError as exc:
        raise ToolRetry(f"Cannot evaluate {_quote(expression)}: {exc}.") from exc


@tool
def current_time(timezone: str | None = None) -> str:
    """Return the current date and time as ISO-8601.

    Args:
        timezone: An IANA timezone such as "Europe/Paris"; UTC when omitted.
    """
    if not timezone:
        return datetime.now(UTC).isoformat()
    try:
        zone = ZoneInfo(timezone)
    # With the tzdata package installed, a name too long for a file is an OSError, not "not found".
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ToolRetry(f"Unknown timezone {_quote(timezone)}; use an IANA name such as 'Europe/Paris'.") from exc
    return datetime.now(zone).isoformat()


def _quote(argument: str) -> str:
    if len(argument) <= _MAX_QUOTED:
        return repr(argument)
    return f"{argument[:_MAX_QUOTED]!r}... ({len(argument)} characters)"


BUILTIN_TOOLS: tuple[Tool, ...] = (calculator, current_time)


def builtin_toolset() -> Toolset:
    return Toolset(*BUILTIN_TOOLS)
