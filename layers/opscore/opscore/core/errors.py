"""Domain errors. Each names a stable snake_case code; opscore.api.resolver maps the classes to HTTP statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with a request, named by where it is (`in`) and its dotted path (`field`)."""

    field: str
    message: str
    location: str = "body"
    type: str = "invalid"

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "in": self.location, "message": self.message, "type": self.type}


class OpsCoreError(Exception):
    """Base of every error the API reports with its own code."""

    code = "internal_error"

    def __init__(self, message: str, details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    @property
    def fields(self) -> dict[str, Any]:
        """Members of the error object beside code, message and details (JSON values)."""
        return {}

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the error's answer carries."""
        return {}


class ValidationFailed(OpsCoreError):
    code = "validation_error"


class PayloadTooLarge(OpsCoreError):
    code = "payload_too_large"


class UnsupportedMediaType(OpsCoreError):
    code = "unsupported_media_type"


class Unauthorized(OpsCoreError):
    code = "unauthorized"


class Forbidden(OpsCoreError):
    code = "forbidden"


class NotFound(OpsCoreError):
    code = "not_found"


class Conflict(OpsCoreError):
    code = "conflict"


class Throttled(OpsCoreError):
    """DynamoDB (or another AWS service) asked us to slow down; the caller may retry."""

    code = "throttled"


class ServiceUnavailable(OpsCoreError):
    """An AWS service Ops-Core depends on failed for a moment (a 5xx of its own, or no answer): the caller may retry.

    Whether the failed call took effect is unknown, so what raises this must be safe to send again (every write that
    can race is conditional, and a repeat is recognised)."""

    code = "service_unavailable"
