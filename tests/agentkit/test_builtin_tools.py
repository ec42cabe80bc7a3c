from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentkit.builtin_tools import CalculationError, calculator, current_time, evaluate_arithmetic
from agentkit.context import RunContext
from agentkit.messages import Usage

CTX: RunContext[None] = RunContext(deps=None, run_id="r", step=1, usage=Usage())


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("-2 ** 2", -4),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("10 / 4", 2.5),
        ("2 ** -2", 0.25),
        ("+-3", -3),
        ("2 ** 1000", 2**1000),
    ],
)
def test_arithmetic(expression: str, expected: float) -> None:
    assert evaluate_arithmetic(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "Call"),
        ("x + 1", "Name"),
        ("(1).real", "Attribute"),
        ("[1, 2][0]", "Subscript"),
        ("'a' * 3", "unsupported constant"),
        ("True + 1", "unsupported constant"),
        ("lambda: 1", "Lambda"),
        ("1 if 1 else 2", "IfExp"),
        ("9 ** 9 ** 9", "exponent"),
        ("2 ** 5000", "exponent"),
        ("(10 ** 100) ** 1000", "too large"),
        ("1 / 0", "division by zero"),
        ("1e308 * 10", "not finite"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not a valid"),
        ("1" + "+1" * 200, "longer than"),
    ],
)
def test_calculator_rejects_everything_but_bounded_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(CalculationError, match=reason):
        evaluate_arithmetic(expression)


async def test_calculator_tool_reports_errors_to_the_model() -> None:
    ok = await calculator.run({"expression": "6 * 7"}, CTX, default_timeout=5)
    assert (ok.content, ok.is_error) == ("42", False)
    bad = await calculator.run({"expression": "open('x')"}, CTX, default_timeout=5)
    assert bad.is_error and bad.error_kind == "retry" and "unsupported syntax" in bad.content


async def test_current_time_is_utc_by_default_and_accepts_iana_zones() -> None:
    out = await current_time.run({}, CTX, default_timeout=5)
    parsed = datetime.fromisoformat(out.content)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=1)
    tokyo = datetime.fromisoformat((await current_time.run({"timezone": "Asia/Tokyo"}, CTX, default_timeout=5)).content)
    assert tokyo.utcoffset() == timedelta(hours=9)
    bad = await current_time.run({"timezone": "Mars/Base"}, CTX, default_timeout=5)
    assert bad.is_error and "Unknown timezone" in bad.content


@pytest.mark.parametrize(
    ("arguments", "tool_name"),
    [({"expression": "1+" * 500_000}, "calculator"), ({"timezone": "Europe/" + "x" * 1_000_000}, "current_time")],
)
async def test_an_error_quotes_only_the_start_of_a_huge_argument(arguments: dict[str, str], tool_name: str) -> None:
    chosen = calculator if tool_name == "calculator" else current_time
    output = await chosen.run(arguments, CTX, default_timeout=5)
    assert output.is_error and output.error_kind == "retry"
    assert len(output.content) < 300 and "characters)" in output.content
