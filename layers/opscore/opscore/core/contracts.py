"""The base of every API contract: strict request models, frozen response models, JSON values."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict


class RequestModel(BaseModel):
    """Request bodies: strict JSON types (no "5" for 5) and no unknown fields, so typos fail loudly."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


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
