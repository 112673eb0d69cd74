"""Who may call what: the IAM policy the authorizer returns, and the same rule for the routes to check again.

An admin key may call every route; an agent key only the routes under its own /agent/{agentId}. API Gateway enforces
the policy (403 for anything else); each route checks the caller again (`opscore.api.routes` declares how), so a
mistake in one layer is not a hole. One exception: a path under /agent/ spelled with a percent-escape passes the
policy and is judged by the route alone (see allowed_resources). The policy is built here rather than with Powertools'
APIGatewayAuthorizerResponse because that helper refuses ':' in paths, which agent ids may contain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from opscore.core.errors import Forbidden, Unauthorized
from opscore.keys.models import Principal, Role

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

API_BASE_PATH = "/v1/opscore"
AGENT_ROUTE_METHODS = ("GET", "POST", "PUT", "DELETE")


def _stage_arn(method_arn: str) -> str:
    """`arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>` -> everything up to the stage."""
    api_arn, _, rest = method_arn.partition("/")
    stage = rest.split("/", 1)[0]
    if not api_arn.startswith("arn:") or not stage:
        raise ValueError(f"not an API Gateway method ARN: {method_arn!r}")
    return f"{api_arn}/{stage}"


def allowed_resources(principal: Principal, method_arn: str) -> list[str]:
    base = _stage_arn(method_arn)
    if principal.role is Role.ADMIN:
        return [f"{base}/*"]
    agent_id = principal.agent_id or ""
    # The method ARN carries the path as the client sent it, and a path may spell one id many ways (RFC 3986: '%3A'
    # or '%3a' for ':', any unreserved character encoded or not: `org%3aa1`, `probe%2Dagent`), more than a policy
    # can list. So the policy lists the id as is and as encodeURIComponent spells it, and lets any other path under
    # /agent/ that holds a '%' through to the route, whose check (opscore.api.routes, PATH_AGENT) compares the
    # decoded id exactly: a path without '%' naming another agent is still refused here, by both layers.
    paths = [f"{API_BASE_PATH}/agent/{spelling}" for spelling in dict.fromkeys((agent_id, quote(agent_id, safe="")))]
    # Methods are spelled out: a '*' in their place would also match across '/' into other agents' paths.
    return [
        resource
        for method in AGENT_ROUTE_METHODS
        for resource in (
            *(spelled for path in paths for spelled in (f"{base}/{method}{path}", f"{base}/{method}{path}/*")),
            f"{base}/{method}{API_BASE_PATH}/agent/*%*",
        )
    ]


def authorizer_response(principal: Principal, method_arn: str, usage_key: str | None = None) -> dict[str, Any]:
    """The policy and context for the principal; with `usage_key`, the API Gateway API key whose usage plan
    throttles this key (the API reads its API keys from the authorizer)."""
    context: dict[str, str] = {"key_id": principal.key_id, "role": principal.role.value}
    if principal.agent_id is not None:
        context["agent_id"] = principal.agent_id
    extra: dict[str, str] = {"usageIdentifierKey": usage_key} if usage_key else {}
    return {
        **extra,
        "principalId": principal.key_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": allowed_resources(principal, method_arn),
                }
            ],
        },
        "context": context,
    }


def principal_from_authorizer_context(context: dict[str, Any] | None) -> Principal | None:
    """Read back what authorizer_response put in the request context (API Gateway passes it to the handler)."""
    if not context or "key_id" not in context or "role" not in context:
        return None
    return Principal(key_id=context["key_id"], role=Role(context["role"]), agent_id=context.get("agent_id") or None)


def caller(event: APIGatewayProxyEvent) -> Principal:
    """The principal the authorizer resolved; API Gateway never reaches a keyed route without one."""
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
