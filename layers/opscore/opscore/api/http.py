"""HTTP mapping shared by every API function: the resolver, the error envelope, request bodies, paths and callers.

Every error leaves the API as `{"error": {"code", "message", "details"?}, "request_id"}`; the mapping from domain
errors to statuses lives here and nowhere else.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel, ValidationError

from opscore.agents.models import AGENT_ID_PATTERN
from opscore.api.access import principal_from_authorizer_context
from opscore.core.errors import (
    Conflict,
    FieldProblem,
    Forbidden,
    NotFound,
    OpsCoreError,
    PayloadTooLarge,
    Throttled,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.keys.models import Principal, Role

MAX_BODY_BYTES = 64 * 1024
_JSON_MEDIA_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")
YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
MAX_YAML_DEPTH = 64

STATUS_BY_ERROR: dict[type[OpsCoreError], int] = {
    ValidationFailed: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Throttled: 429,
}


def status_for(error: OpsCoreError) -> int:
    for error_class in type(error).__mro__:
        if error_class in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_class]
    return 500


def error_body(code: str, message: str, request_id: str, details: list[FieldProblem] | None = None) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = [problem.as_dict() for problem in details]
    return json.dumps({"error": error, "request_id": request_id})


def build_resolver() -> APIGatewayRestResolver:
    """A REST resolver whose every failure, expected or not, answers in the Ops-Core error envelope."""
    app = APIGatewayRestResolver()

    def respond(status: int, code: str, message: str, details: list[FieldProblem] | None = None) -> Response[str]:
        request_id = app.current_event.request_context.request_id or ""
        headers = {"Retry-After": "1"} if status == 429 else None
        return Response(status, content_types.APPLICATION_JSON, error_body(code, message, request_id, details), headers)

    def domain_error(error: OpsCoreError) -> Response[str]:
        status = status_for(error)
        logger.info("request refused", extra={"status": status, "error_code": error.code})
        return respond(status, error.code, error.message, error.details)

    def no_route(_: NotFoundError) -> Response[str]:
        return respond(404, "not_found", "no such route")

    def unexpected(error: Exception) -> Response[str]:
        # The trace goes to the log (with the request id); the client only learns that it failed and where to look.
        logger.exception("unhandled error", extra={"error_type": type(error).__name__})
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


def read_json[ModelT: BaseModel](event: APIGatewayProxyEvent, model: type[ModelT], allow_yaml: bool = False) -> ModelT:
    """Parse the request body as `model`: 415 for other types, 413 over 64 KiB, 400 naming each wrong field.

    With `allow_yaml`, a YAML body (application/yaml) is read too, into the same JSON types and checks.
    """
    content_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    is_yaml = allow_yaml and content_type in YAML_MEDIA_TYPES
    if content_type and not is_yaml and not _JSON_MEDIA_TYPE.match(content_type):
        accepted = "application/json or application/yaml" if allow_yaml else "application/json"
        raise UnsupportedMediaType(f"send the body as {accepted}, not {content_type}")
    raw = event.decoded_body or ""
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body must be at most {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        raise ValidationFailed("a body is required", [FieldProblem("", "the body is empty", type="missing")])
    try:
        return model.model_validate_json(_yaml_as_json(raw) if is_yaml else raw)
    except ValidationError as error:
        problems = [
            FieldProblem(
                field=".".join(str(part) for part in problem["loc"]),
                message=problem["msg"],
                type=problem["type"],
            )
            for problem in error.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise ValidationFailed("the request body is not valid", problems) from None


def _yaml_as_json(raw: str) -> str:
    """YAML to JSON text: JSON's types only, no anchors or aliases, at most MAX_YAML_DEPTH levels deep.

    Aliases can expand a few KiB into gigabytes and deep nesting makes parsers recurse for seconds: both are refused
    while the events stream by, before any document is built. Values JSON lacks (dates, sets, binary, NaN) are refused
    rather than rewritten, so what is stored is what was meant.
    """
    import yaml  # only the routes that take YAML pay for importing it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: much faster
    try:
        depth = 0
        for event in yaml.parse(raw, Loader=loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise _yaml_problem("YAML anchors and aliases are not accepted", "yaml_alias")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise _yaml_problem(f"YAML nested more than {MAX_YAML_DEPTH} levels deep", "yaml_depth")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        document = yaml.load(raw, Loader=loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        raise _yaml_problem(str(error).splitlines()[0], "yaml_invalid") from None
    try:
        return json.dumps(document, allow_nan=False)
    except (TypeError, ValueError):
        raise _yaml_problem(
            "YAML values must be JSON values: quote dates and times, and use no sets, binary, NaN or huge numbers",
            "yaml_type",
        ) from None


def _yaml_problem(message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(message, [FieldProblem("", message, type=kind)])


def path_value(raw: str, name: str, pattern: str) -> str:
    """A path parameter checked against its pattern: 400 naming it when it does not match."""
    if not re.fullmatch(pattern, raw):  # fullmatch: with re.match, '$' would also accept a trailing newline
        raise ValidationFailed(
            f"{name} is not valid",
            [FieldProblem(name, f"must match {pattern}", location="path", type="pattern")],
        )
    return raw


def agent_id_from_path(raw: str) -> str:
    return path_value(raw, "agentId", AGENT_ID_PATTERN)


def authorised_agent_id(event: APIGatewayProxyEvent, raw: str) -> str:
    """The path's agentId, validated, added to every log line, and checked against the caller's key.

    API Gateway passes `path` as sent (percent-encoded, which is what the resolver routes on) and `pathParameters`
    decoded: the decoded one is the id, so `org%3Aa1` and `org:a1` name the same agent.
    """
    agent_id = agent_id_from_path((event.path_parameters or {}).get("agentId", raw))
    logger.append_keys(agent_id=agent_id)
    require_agent_access(caller(event), agent_id)
    return agent_id


def query_int(event: APIGatewayProxyEvent, name: str, default: int, minimum: int, maximum: int) -> int:
    value = optional_query_int(event, name, minimum, maximum)
    return default if value is None else value


def optional_query_int(event: APIGatewayProxyEvent, name: str, minimum: int, maximum: int) -> int | None:
    raw = (event.query_string_parameters or {}).get(name)
    if raw is None:
        return None
    # Plain ASCII digits only: str.isdigit() also accepts characters such as '²' that int() refuses.
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not minimum <= int(raw) <= maximum:
        raise ValidationFailed(
            f"{name} must be a whole number from {minimum} to {maximum}",
            [FieldProblem(name, f"must be an integer in [{minimum}, {maximum}]", location="query")],
        )
    return int(raw)


def query_choice(event: APIGatewayProxyEvent, name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (event.query_string_parameters or {}).get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise ValidationFailed(
            f"{name} must be one of {', '.join(choices)}",
            [FieldProblem(name, f"must be one of {', '.join(choices)}", location="query")],
        )
    return raw


def caller(event: APIGatewayProxyEvent) -> Principal:
    """The principal the authorizer resolved; API Gateway never reaches a handler without one."""
    principal = principal_from_authorizer_context(event.request_context.authorizer.raw_event)
    if principal is None:
        raise Unauthorized("a valid X-API-Key header is required")
    return principal


def require_agent_access(principal: Principal, agent_id: str) -> None:
    if not principal.may_act_for(agent_id):
        raise Forbidden(f"this key may not act for agent {agent_id}")


def require_admin(principal: Principal) -> None:
    if principal.role is not Role.ADMIN:
        raise Forbidden("this route needs an admin key")
