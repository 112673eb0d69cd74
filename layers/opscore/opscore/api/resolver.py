"""The resolver every API function answers through, and the one mapping from domain errors to HTTP statuses.

Every error leaves the API as `{"error": {"code", "message", "details"?}, "request_id"}`; the mapping from domain
errors to statuses lives here and nowhere else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from pydantic import BaseModel

from opscore.core.errors import (
    Conflict,
    FieldProblem,
    Forbidden,
    NotFound,
    OpsCoreError,
    PayloadTooLarge,
    ServiceUnavailable,
    Throttled,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from opscore.core.observability import MetricUnit, logger, metrics

STATUS_BY_ERROR: dict[type[OpsCoreError], int] = {
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Throttled: 429,
    ServiceUnavailable: 503,
}


def status_for(error: OpsCoreError) -> int:
    for error_class in type(error).__mro__:
        if error_class in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_class]
    return 500


def error_body(
    code: str,
    message: str,
    request_id: str,
    details: list[FieldProblem] | None = None,
    fields: dict[str, Any] | None = None,
) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = [problem.as_dict() for problem in details]
    error.update(fields or {})
    return json.dumps({"error": error, "request_id": request_id})


class LoggedResolver(APIGatewayRestResolver):
    """Logs one `request` line per request it answers: method, the route, the status, and how long it took."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        response = super().resolve(event, context)
        path_parameters = event.get("pathParameters") or {}
        logger.info(
            "request",
            extra={
                "event": "request",
                "method": event.get("httpMethod"),
                "route": event.get("resource"),
                "status": response.get("statusCode"),
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                **({"agent_id": path_parameters["agentId"]} if "agentId" in path_parameters else {}),
            },
        )
        return response


def build_resolver() -> APIGatewayRestResolver:
    """A REST resolver whose every failure, expected or not, answers in the Ops-Core error envelope."""
    app = LoggedResolver()

    def respond(
        status: int,
        code: str,
        message: str,
        details: list[FieldProblem] | None = None,
        error: OpsCoreError | None = None,
    ) -> Response[str]:
        request_id = app.current_event.request_context.request_id or ""
        headers = {"Retry-After": "1"} if status in {429, 503} else {}
        fields = error.fields if error is not None else None
        headers |= error.headers if error is not None else {}
        body = error_body(code, message, request_id, details, fields)
        return Response(status, content_types.APPLICATION_JSON, body, headers or None)

    def domain_error(error: OpsCoreError) -> Response[str]:
        status = status_for(error)
        logger.info("request refused", extra={"event": "request_refused", "status": status, "error_code": error.code})
        return respond(status, error.code, error.message, error.details, error)

    def no_route(_: NotFoundError) -> Response[str]:
        return respond(404, "not_found", "no such route")

    def unexpected(error: Exception) -> Response[str]:
        from opscore.aws.failures import transient_cause, unavailable

        if transient_cause(error) is not None:
            # DynamoDB or Step Functions failed for a moment (a 5xx of theirs, or no answer): worth a retry (a write
            # that took effect is recognised by its repeat; docs/security.md). The trace goes to the log all the same.
            logger.warning("a dependency failed", exc_info=True, extra={"event": "dependency_failed"})
            metrics.add_metric(name="DependencyFailures", unit=MetricUnit.Count, value=1)
            return domain_error(unavailable())
        # The trace goes to the log (with the request id); the client only learns that it failed and where to look.
        logger.exception("unhandled error", extra={"event": "unhandled_error", "error_type": type(error).__name__})
        metrics.add_metric(name="UnhandledErrors", unit=MetricUnit.Count, value=1)
        return respond(500, "internal_error", "Ops-Core failed to handle the request; the request_id is in its logs")

    # Registered by call, not as decorators: Powertools' decorators are untyped and would erase these signatures.
    app.exception_handler(OpsCoreError)(domain_error)
    app.not_found(no_route)
    app.exception_handler(Exception)(unexpected)
    return app


def json_response(status: int, body: BaseModel) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, body.model_dump_json())


def empty_response(status: int = 204) -> Response[str]:
    return Response(status, None, "")
