"""The exceptions the client raises: one class per kind of answer, each carrying the API's error envelope.

Every error answer of Ops-Core is `{"error": {"code", "message", "details"?}, "request_id"}`. The class is chosen by
`error.code` first (a 409 may be a stale state report, a quarantine or a plain conflict), then by the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opscore_sdk.models import Quarantine


@dataclass(frozen=True)
class FieldDetail:
    """One wrong field of a request: its dotted path, where it was sent (body, path, query, header) and why."""

    field: str
    location: str
    message: str
    type: str


class OpsCoreError(Exception):
    """An error answer from Ops-Core, or a request that never got one (status 0, code `connection_error`)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        details: tuple[FieldDetail, ...] = (),
        request_id: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.body = body
        # Seconds the server asked to wait (Retry-After), when it said.
        self.retry_after = retry_after


class ConnectionFailed(OpsCoreError):
    """No answer: the connection failed or the request timed out (after the retries the policy allows)."""


class UnexpectedResponse(OpsCoreError):
    """A successful answer whose body does not fit the model the API documents (code `unexpected_response`): an
    Ops-Core that changed a field's type, or a proxy's page. `body` is what came back."""


class ValidationFailed(OpsCoreError):
    """400: the request is not valid; `details` names each wrong field."""

    @property
    def fields(self) -> dict[str, str]:
        return {detail.field: detail.message for detail in self.details}


class Unauthorized(OpsCoreError):
    """401: no API key, or an unknown or revoked one."""


class Forbidden(OpsCoreError):
    """403: the key may not call this route."""


class NotFound(OpsCoreError):
    """404: unknown agent, key, workflow, version, session, task or route."""


class Conflict(OpsCoreError):
    """409: the request conflicts with what is stored (`code` says how: session_ended, task_not_open, ...)."""


class StaleState(Conflict):
    """409 `stale_state`: a state at the same or a later timestamp is already stored; nothing changed."""


class Quarantined(Conflict):
    """409 `agent_quarantined`: the agent is quarantined; `quarantine` says since when and why, and `retry_after`
    the seconds until it may lease a probe task."""

    @property
    def quarantine(self) -> Quarantine | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        found = error.get("quarantine") if isinstance(error, dict) else None
        return Quarantine.model_validate(found) if isinstance(found, dict) else None


class Throttled(OpsCoreError):
    """429: Ops-Core asked to slow down (`retry_after` seconds, when it said)."""


class ServerError(OpsCoreError):
    """5xx: Ops-Core failed."""


_BY_CODE: dict[str, type[OpsCoreError]] = {
    "stale_state": StaleState,
    "agent_quarantined": Quarantined,
    "validation_error": ValidationFailed,
    "bad_request": ValidationFailed,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "throttled": Throttled,
    "internal_error": ServerError,
}
_BY_STATUS: dict[int, type[OpsCoreError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: Throttled,
}


def error_class(status: int, code: str) -> type[OpsCoreError]:
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else OpsCoreError


def error_from_answer(
    status: int, body: Any, text: str, retry_after: float | None, request_id: str | None = None
) -> OpsCoreError:
    """The exception for an error answer; a body that is not Ops-Core's envelope (a proxy's page) still gives one."""
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        code = str(envelope.get("code") or f"http_{status}")
        message = str(envelope.get("message") or "")
        details = tuple(_detail(item) for item in envelope.get("details") or () if isinstance(item, dict))
        request_id = str(body.get("request_id")) if body.get("request_id") is not None else request_id
    else:
        code, message, details = f"http_{status}", text[:500], ()
    return error_class(status, code)(
        message,
        status=status,
        code=code,
        details=details,
        request_id=request_id,
        body=body,
        retry_after=retry_after,
    )


def _detail(item: dict[str, Any]) -> FieldDetail:
    return FieldDetail(
        field=str(item.get("field", "")),
        location=str(item.get("in", "")),
        message=str(item.get("message", "")),
        type=str(item.get("type", "")),
    )
