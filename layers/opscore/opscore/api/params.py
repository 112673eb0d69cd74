"""Path and query parameters: each checked against its rule, 400 naming it (and where it was) when it breaks it.

A route's path ids (`{agentId}`, `{sessionId}`, ...) are read by `PathId.read` alone: the decoded value, checked
against the pattern of the context that owns the id, and added to every later log line under its log key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from opscore.core.errors import FieldProblem, ValidationFailed
from opscore.core.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

AGENT_ID = "agentId"


class PathId(NamedTuple):
    name: str  # as the route, template.yaml and the OpenAPI document spell it
    pattern: str | None  # None: checked by the service that owns it
    log_key: str | None = None  # the key it is logged under from the moment it is read

    def read(self, event: APIGatewayProxyEvent, routed: Mapping[str, str]) -> str:
        """The id from the request's path, decoded, checked and logged.

        API Gateway passes `path` as sent (percent-encoded, which is what the resolver routes on, `routed`) and
        `pathParameters` decoded: the decoded one is the id, so `org%3Aa1` and `org:a1` name the same agent.
        """
        raw = (event.path_parameters or {}).get(self.name, routed.get(self.name, ""))
        value = raw if self.pattern is None else path_value(raw, self.name, self.pattern)
        if self.log_key is not None:
            logger.append_keys(**{self.log_key: value})
        return value


def path_id(name: str) -> PathId:
    """The id a route's `{name}` stands for. Each pattern's module is imported here, when a route names it, so a
    function imports only the contexts whose ids its own routes carry."""
    match name:
        case "agentId":
            from opscore.agents.models import AGENT_ID_PATTERN

            return PathId(name, AGENT_ID_PATTERN, "agent_id")
        case "sessionId":
            from opscore.sessions.models import SESSION_ID_PATTERN

            return PathId(name, SESSION_ID_PATTERN, "session_id")
        case "taskId":
            from opscore.sessions.models import TASK_ID_PATTERN

            return PathId(name, TASK_ID_PATTERN, "task_id")
        case "workflowId":
            from opscore.workflows.templates import WORKFLOW_NAME_PATTERN

            return PathId(name, WORKFLOW_NAME_PATTERN, "workflow_id")
        case "keyId":
            from opscore.keys.service import KEY_ID_PATTERN

            # Logged as `target_key_id`: `key_id` names the caller's key on the audit line.
            return PathId(name, KEY_ID_PATTERN.pattern, "target_key_id")
    raise ValueError(f"no path id is named {name!r}")


def path_value(raw: str, name: str, pattern: str) -> str:
    """A path parameter checked against its pattern: 400 naming it when it does not match."""
    if not re.fullmatch(pattern, raw):  # fullmatch: with re.match, '$' would also accept a trailing newline
        raise ValidationFailed(
            f"{name} is not valid",
            [FieldProblem(name, f"must match {pattern}", location="path", type="pattern")],
        )
    return raw


def query_text(event: APIGatewayProxyEvent, name: str) -> str | None:
    """The parameter as sent; None when absent. Sent empty (`?window=`) it is a 400 naming it, never taken for absent:
    every query parameter the API takes has an enumeration, a pattern or a format that no empty value meets."""
    raw = (event.query_string_parameters or {}).get(name)
    if raw == "":
        message = "must not be empty: leave the parameter out for its default"
        raise ValidationFailed(f"{name} {message}", [FieldProblem(name, message, location="query", type="empty")])
    return raw


def query_int(event: APIGatewayProxyEvent, name: str, default: int, minimum: int, maximum: int) -> int:
    value = optional_query_int(event, name, minimum, maximum)
    return default if value is None else value


def optional_query_int(event: APIGatewayProxyEvent, name: str, minimum: int, maximum: int) -> int | None:
    raw = (event.query_string_parameters or {}).get(name)
    if raw is None:
        return None
    # Plain ASCII digits only (str.isdigit() also accepts characters such as '²' that int() refuses), and no more of
    # them than the maximum has, so int() never reads a huge number.
    digits = len(str(maximum))
    if not re.fullmatch(rf"[0-9]{{1,{digits}}}", raw) or not minimum <= int(raw) <= maximum:
        raise ValidationFailed(
            f"{name} must be a whole number from {minimum} to {maximum}",
            [FieldProblem(name, f"must be an integer in [{minimum}, {maximum}]", location="query")],
        )
    return int(raw)


def refuse_unknown_query(event: APIGatewayProxyEvent, known: tuple[str, ...]) -> None:
    """A 400 naming each query parameter the route does not take (a misspelt `limt` is not silently ignored)."""
    sent = set(event.query_string_parameters or {}) | set(event.multi_value_query_string_parameters or {})
    unknown = sorted(sent - set(known))
    if unknown:
        takes = ", ".join(known) or "none"
        raise ValidationFailed(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            [
                FieldProblem(name, f"this route takes no such parameter (it takes: {takes})", "query", "unknown")
                for name in unknown
            ],
        )


def query_time(event: APIGatewayProxyEvent, name: str) -> datetime | None:
    """An RFC 3339 date-time with its offset (`2026-11-30T12:00:00Z`), or None when the parameter is absent."""
    raw = (event.query_string_parameters or {}).get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.upper().replace(" ", "+"))  # a raw `+` in a query string reads as a space
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        message = "must be an RFC 3339 date-time with its offset, such as 2026-11-30T12:00:00Z"
        raise ValidationFailed(f"{name} {message}", [FieldProblem(name, message, location="query")])
    return moment


def query_window(event: APIGatewayProxyEvent) -> tuple[datetime | None, datetime | None]:
    """`since` and `until`, each optional; `since` after `until` is a 400."""
    since, until = query_time(event, "since"), query_time(event, "until")
    if since is not None and until is not None and since > until:
        raise ValidationFailed(
            "since must not be after until", [FieldProblem("since", "must not be after until", location="query")]
        )
    return since, until


def query_matching(event: APIGatewayProxyEvent, name: str, pattern: str) -> str | None:
    """The parameter when it matches `pattern`; None when absent; a 400 naming it otherwise."""
    raw = (event.query_string_parameters or {}).get(name)
    if raw is not None and re.fullmatch(pattern, raw) is None:
        raise ValidationFailed(f"{name} is not valid", [FieldProblem(name, f"must match {pattern}", location="query")])
    return raw


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
