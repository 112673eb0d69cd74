"""The base of every API contract: strict request models, frozen response models, JSON values."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo


class RequestModel(BaseModel):
    """Request bodies: strict JSON types (no "5" for 5) and no unknown fields, so typos fail loudly."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# Free text a request may carry. Control characters (C0, DEL, C1) are refused everywhere: a NUL or an escape
# sequence would be stored, then read differently by each log viewer, terminal or dashboard that shows it. A `Line`
# (a name, a version, an error type) is one line; `Prose` (a description, an error message) may keep tab, line feed
# and carriage return, which stack traces and multi-line messages need.
# The patterns are published in the schemas; the checks below give the friendlier message.
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
PROSE_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
_LINE_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROSE_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _line(value: str) -> str:
    if _LINE_CONTROLS.search(value):
        raise ValueError("must be one line without control characters (no NUL, tab, line break or escape)")
    return value


def _prose(value: str) -> str:
    if _PROSE_CONTROLS.search(value):
        raise ValueError("must not contain control characters other than tab, line feed and carriage return")
    return value


Line = Annotated[str, AfterValidator(_line), Field(json_schema_extra={"pattern": LINE_PATTERN})]
Prose = Annotated[str, AfterValidator(_prose), Field(json_schema_extra={"pattern": PROSE_PATTERN})]


def _integral(value: Any) -> Any:
    """3779.0 is the integer 3779, as JSON Schema counts it; 3779.5 stays a float for the strict check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer a request may write with a zero fraction (`3779.0`, `1e3`): JSON Schema 2020-12 says 1.0 is an
# integer, so a client whose JSON library writes every number as a float is not refused. "5" and true still are.
# Optional ones take the validator on the union: on `Integer | None` pydantic publishes ge/le, not minimum/maximum.
Integer = Annotated[int, BeforeValidator(_integral)]
OptionalInteger = Annotated[int | None, BeforeValidator(_integral)]


def _present_or_absent(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        raise ValueError(f"{info.field_name} may be left out, but not null: its documented type has no null")
    return value


# An optional request field whose type in docs/openapi.yaml has no null: left out, it takes its default (kept as None
# here, since a default is never validated); sent as `null`, it is a 400 naming it, as the document says.
NotNull = BeforeValidator(_present_or_absent)


def canonical_json(value: Any) -> str:
    """One spelling per JSON value, so stored payloads compare equal exactly when they are equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_json(value: Any) -> Any:
    """A stored JSON text back as its value; None for no text (an attribute never written)."""
    return json.loads(value) if isinstance(value, str) else None


def _finite(value: Any) -> Any:
    """Refuse NaN and Infinity anywhere inside a free-form JSON value: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if isinstance(value, dict):
        for item in value.values():
            _finite(item)
    elif isinstance(value, list):
        for item in value:
            _finite(item)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite)]


class ResponseModel(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(ResponseModel):
    status: Literal["ok"] = "ok"
    version: str
