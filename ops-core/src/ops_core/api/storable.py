"""What the database can store: the one home of the rules for client-supplied text and JSON.

Checked at the API, before anything is stored, so a client learns which field
is wrong instead of getting a 500 from the driver:

- PostgreSQL's text and jsonb refuse NUL (``\\u0000``) and anything that is not
  Unicode (a lone surrogate such as ``\\udfff``, which JSON's ``\\u`` escapes can
  spell);
- jsonb has no NaN or infinity (``NaN``, ``Infinity`` and ``1e400`` all parse
  to non-finite floats in Python);
- nesting is bounded so every stored value can be serialised again (pydantic's
  serialiser gives up at 255 levels) and walked without recursion limits;
- size is bounded so one task's input cannot dominate a row, a page or a worker.

The checks are iterative: a hostile document cannot exhaust the stack.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

MAX_JSON_DEPTH = 32
MAX_INPUT_BYTES = 1_048_576
# PostgreSQL INTEGER: every integer a client sends for an INTEGER column stays within it.
INT32_MAX = 2**31 - 1

_SHOWN_KEY_CHARS = 40


def _invalid(reason: str) -> PydanticCustomError:
    return PydanticCustomError("unstorable", "{reason}", {"reason": reason})


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None if it can."""
    position = value.find("\x00")
    if position >= 0:
        return f"contains a NUL character (\\u0000) at position {position}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (lone surrogate {value[exc.start]!r} at position {exc.start})"
    return None


def check_text(value: str) -> str:
    """A pydantic after-validator for every client-supplied string that is stored or queried."""
    problem = text_problem(value)
    if problem is not None:
        raise _invalid(f"must be storable text: it {problem}")
    return value


def check_json_object(value: dict[str, Any]) -> dict[str, Any]:
    """A pydantic after-validator for client-supplied JSON (a task's ``input``)."""
    problem = json_problem(value, max_depth=MAX_JSON_DEPTH)
    if problem is not None:
        raise _invalid(problem)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_INPUT_BYTES:
        raise _invalid(f"is {size} bytes of JSON; at most {MAX_INPUT_BYTES} are allowed")
    return value


def json_problem(root: object, *, max_depth: int) -> str | None:
    """Why ``root`` (as parsed from JSON) cannot be stored, naming where in it; None if it can."""
    # (value, path, depth of the containers it sits in)
    stack: list[tuple[object, str, int]] = [(root, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = f" at {path}" if path else ""
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                return f"must hold only storable text: the string{where} {problem}"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"must hold only finite numbers: {value}{where} is not one"
        elif isinstance(value, dict | list):
            if depth >= max_depth:
                return f"must not nest more than {max_depth} levels deep{where}"
            if isinstance(value, dict):
                for key, item in value.items():
                    key_problem = text_problem(key) if isinstance(key, str) else "is not a string"
                    if key_problem is not None:
                        return f"must hold only storable keys: a key{where} {key_problem}"
                    stack.append((item, f"{path}[{key[:_SHOWN_KEY_CHARS]!r}]", depth + 1))
            else:
                stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))
        elif not (value is None or isinstance(value, bool | int | float)):
            return f"must hold only JSON values: {type(value).__name__}{where} is not one"
    return None


StorableText = Annotated[str, AfterValidator(check_text)]
StorableJsonObject = Annotated[dict[str, Any], AfterValidator(check_json_object)]
