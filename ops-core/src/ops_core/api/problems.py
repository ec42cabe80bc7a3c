"""Pydantic's validation errors as one readable line, the message every interface gives (REST, gRPC, batch
items, stored templates). Free of FastAPI, so the services and the workers can use it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One readable line per problem: where it is and what is wrong with it."""
    return "; ".join(_describe(error) for error in errors) or "invalid request"


def _describe(error: Any) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid":
        detail = error.get("ctx", {}).get("error", "invalid JSON")
        position = f" at position {loc[1]}" if len(loc) > 1 else ""
        return f"malformed JSON body{position}: {detail}"
    if loc == ["body"] and error.get("type") in _NOT_AN_OBJECT:
        return "body: must be a JSON object sent with Content-Type: application/json"
    # "body", "query" and "path" say where; the rest names the field.
    where, field = (loc[0], ".".join(loc[1:])) if loc else ("request", "")
    name = f"{where} field '{field}'" if field else where
    return f"{name}: {error.get('msg', 'invalid value')}"


_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})
