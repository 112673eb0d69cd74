"""Routes that declare who may call them: the access policy and the path's ids are checked before the route runs.

    api = Api()

    @api.post("/agent/{agentId}/workflow", allow=ADMIN)
    def trigger(request: Request) -> Response[str]:
        started = wiring.sessions().trigger(request.agent_id, request.body(TriggerRequest), request.caller.key_id)
        return json_response(202, started)

A path is spelled as template.yaml and the OpenAPI document spell it, under the API's base path. Before a route runs,
its declaration is enforced in one order, the same for every route:
- `ADMIN`: the key must be an admin's (401, 403), checked before the path or the body is read, so an agent key
  learns nothing about what it may not send;
- `PATH_AGENT`: agentId is read first (400 when malformed), then the key must be an admin's or that agent's own (403);
- then the path's other ids are read, in the order the path names them;
- then a route that takes no body (every GET and DELETE, and POSTs declared with `body=False`) refuses one (400).
Every id is read by `PathId.read`: decoded, checked against its pattern, and added to the log keys.

Every call the declaration refuses (401, 403) and every admin action (`audit=True`, or any call but a read made with an
admin key) leaves an `audit` line once it is answered (opscore.api.audit).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

from opscore.api.access import (
    API_BASE_PATH,
    caller,
    principal_from_authorizer_context,
    require_admin,
    require_agent_access,
)
from opscore.api.audit import audit_outcome, caller_fields, is_admin_action, write_audit
from opscore.api.bodies import read_json, refuse_body
from opscore.api.params import (
    AGENT_ID,
    PathId,
    optional_query_int,
    path_id,
    query_choice,
    query_int,
    query_matching,
    query_text,
    query_window,
    refuse_unknown_query,
)
from opscore.api.resolver import build_resolver, status_for
from opscore.core.errors import OpsCoreError

if TYPE_CHECKING:
    from datetime import datetime

    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from pydantic import BaseModel

    from opscore.keys.models import Principal


class Allow(Enum):
    ANYONE = "anyone"  # no key: API Gateway calls the route without the authorizer (the health check)
    ADMIN = "admin"  # an admin key
    PATH_AGENT = "path_agent"  # an admin key, or the key of the agent the path's agentId names


ANYONE = Allow.ANYONE
ADMIN = Allow.ADMIN
PATH_AGENT = Allow.PATH_AGENT

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


# NamedTuples rather than frozen dataclasses here and in params: defining a frozen dataclass takes about 0.7 ms of
# every cold start, a NamedTuple about 0.1 ms.
class Request(NamedTuple):
    """What a route is handed: the event, its caller (admitted) and its path's ids (decoded and checked)."""

    event: APIGatewayProxyEvent
    lambda_context: LambdaContext
    ids: Mapping[str, str]
    principal: Principal | None = None

    @property
    def caller(self) -> Principal:
        return self.principal if self.principal is not None else caller(self.event)

    @property
    def agent_id(self) -> str:
        return self.ids["agentId"]

    @property
    def session_id(self) -> str:
        return self.ids["sessionId"]

    @property
    def task_id(self) -> str:
        return self.ids["taskId"]

    @property
    def workflow_id(self) -> str:
        return self.ids["workflowId"]

    @property
    def key_id(self) -> str:
        return self.ids["keyId"]

    def body[ModelT: BaseModel](self, model: type[ModelT], allow_yaml: bool = False) -> ModelT:
        return read_json(self.event, model, allow_yaml)

    def query(self, name: str) -> str | None:
        """The parameter as sent; None when absent; a 400 naming it when sent empty."""
        return query_text(self.event, name)

    def optional_query_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        """One of `choices`, or None when the parameter is absent; a 400 naming it otherwise."""
        return query_choice(self.event, name, choices, "") or None

    def query_matching(self, name: str, pattern: str) -> str | None:
        return query_matching(self.event, name, pattern)

    def query_window(self) -> tuple[datetime | None, datetime | None]:
        """The `since` and `until` query parameters (RFC 3339), each optional."""
        return query_window(self.event)

    def takes_query(self, *known: str) -> None:
        """Refuse (400) any query parameter but `known`, naming each."""
        refuse_unknown_query(self.event, known)

    def query_int(self, name: str, *, default: int, minimum: int, maximum: int) -> int:
        return query_int(self.event, name, default, minimum, maximum)

    def optional_query_int(self, name: str, *, minimum: int, maximum: int) -> int | None:
        return optional_query_int(self.event, name, minimum, maximum)

    def query_choice(self, name: str, choices: tuple[str, ...], *, default: str) -> str:
        return query_choice(self.event, name, choices, default)

    def header(self, name: str) -> str | None:
        return self.event.headers.get(name)


type Endpoint = Callable[[Request], Response[str]]


class Route(NamedTuple):
    method: str
    path: str  # under the base path, as the OpenAPI document spells it: /agent/{agentId}/sessions/{sessionId}
    allow: Allow
    ids: tuple[PathId, ...]
    audit: bool = False  # every call is audited, reads too (else only refusals and an admin key's other calls)
    body: bool = False  # whether the route reads a request body; one that does not refuses any

    @classmethod
    def declare(cls, method: str, path: str, allow: Allow, audit: bool = False, body: bool = False) -> Route:
        names = _PLACEHOLDER.findall(path)
        if allow is Allow.PATH_AGENT and names[:1] != [AGENT_ID]:
            # The access check needs the agent before any other id is read: /agent/{agentId} must lead the path.
            raise ValueError(f"{method} {path}: allow=PATH_AGENT needs a path that starts with /agent/{{agentId}}")
        return cls(method, path, allow, tuple(path_id(name) for name in names), audit, body)

    @property
    def action(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def rule(self) -> str:
        """The path as Powertools routes on it: the full path, `{name}` spelled `<name>`."""
        return API_BASE_PATH + _PLACEHOLDER.sub(r"<\1>", self.path)

    def admit(self, event: APIGatewayProxyEvent, routed: Mapping[str, str]) -> tuple[Principal | None, dict[str, str]]:
        """The caller and the path's ids, once the declaration allows the call (else 400, 401 or 403)."""
        principal = _admin(event) if self.allow is Allow.ADMIN else None
        ids: dict[str, str] = {}
        for parameter in self.ids:
            ids[parameter.name] = parameter.read(event, routed)
            if self.allow is Allow.PATH_AGENT and parameter.name == AGENT_ID:
                principal = _agent_or_admin(event, ids[AGENT_ID])
        return principal, ids

    def audited(self, event: APIGatewayProxyEvent, status: int) -> None:
        """The audit line of an answered call, when it is a refusal or an admin action (opscore.api.audit)."""
        principal = principal_from_authorizer_context(event.request_context.authorizer.raw_event)
        outcome = audit_outcome(status, is_admin_action(self.method, principal, self.audit))
        if outcome is not None:
            write_audit(
                self.action, outcome, status, event.request_context.identity.source_ip, **caller_fields(principal)
            )


def _status_of(error: Exception) -> int:
    return status_for(error) if isinstance(error, OpsCoreError) else 500


def _admin(event: APIGatewayProxyEvent) -> Principal:
    principal = caller(event)
    require_admin(principal)
    return principal


def _agent_or_admin(event: APIGatewayProxyEvent, agent_id: str) -> Principal:
    principal = caller(event)
    require_agent_access(principal, agent_id)
    return principal


class Api:
    """One function's routes, over one resolver that answers every failure in the Ops-Core error envelope."""

    def __init__(self) -> None:
        self.resolver = build_resolver()
        self.routes: list[Route] = []

    def get(self, path: str, *, allow: Allow, audit: bool = False) -> Callable[[Endpoint], Endpoint]:
        return self.route("GET", path, allow, audit)

    def post(
        self, path: str, *, allow: Allow, audit: bool = False, body: bool = True
    ) -> Callable[[Endpoint], Endpoint]:
        return self.route("POST", path, allow, audit, body)

    def put(self, path: str, *, allow: Allow, audit: bool = False, body: bool = True) -> Callable[[Endpoint], Endpoint]:
        return self.route("PUT", path, allow, audit, body)

    def delete(self, path: str, *, allow: Allow, audit: bool = False) -> Callable[[Endpoint], Endpoint]:
        return self.route("DELETE", path, allow, audit)

    def route(
        self, method: str, path: str, allow: Allow, audit: bool = False, body: bool = False
    ) -> Callable[[Endpoint], Endpoint]:
        route = Route.declare(method, path, allow, audit, body)

        def register(endpoint: Endpoint) -> Endpoint:
            def admitted(**routed: str) -> Response[str]:
                event = self.resolver.current_event
                try:
                    principal, ids = route.admit(event, routed)
                    if not route.body:
                        refuse_body(event)
                    response = endpoint(Request(event, self.resolver.lambda_context, ids, principal))
                except Exception as error:  # answered by the resolver's handlers; audited here with its status
                    route.audited(event, _status_of(error))
                    raise
                route.audited(event, response.status_code)
                return response

            # Powertools sees only `admitted`; the endpoint keeps its own signature for mypy and for readers.
            self.resolver.route(route.rule, method)(admitted)
            self.routes.append(route)
            return endpoint

        return register

    def resolve(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.resolver.resolve(event, context)
