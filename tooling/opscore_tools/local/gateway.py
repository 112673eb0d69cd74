"""API Gateway (REST) emulation: route an HTTP request to its function as the proxy event AWS would send.

What it reproduces, all read from template.yaml: the routes; the REQUEST authorizer with its identity header, its
"Unauthorized" -> 401 rule and its IAM policy (evaluated against the method ARN, so a denied route is a 403 exactly as
in AWS); the gateway responses (unknown route, 401, 403, 413, 429, 5xx) rendered from their templates; and the
per-key usage plan's throttle, as a token bucket per key (KeyThrottle). The requests it refuses itself (no key: 401;
the policy: 403), which in AWS only the API's access log records, it hands to `audit`, shaped as the functions' audit
lines are (opscore.api.audit).
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from opscore_tools.local.lambdas import LambdaRuntime
from opscore_tools.local.template import ACCOUNT_ID, REGION, GatewayResponse, Route, Template, Throttle
from opscore_tools.target import API_BASE_PATH

# An audit line of a request the gateway refused: (request id, its fields).
type AuditSink = Callable[[str, dict[str, Any]], None]

API_ID = "opscorelocal"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own limit

# Status codes API Gateway uses for each gateway response when the template does not set one.
DEFAULT_STATUS = {
    "UNAUTHORIZED": 401,
    "ACCESS_DENIED": 403,
    # A key with no API key in the usage plan. Never raised here: the local runtime keeps no API keys (it limits each
    # key by its usage identifier itself), so every key it knows has its limit.
    "INVALID_API_KEY": 403,
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "RESOURCE_NOT_FOUND": 404,
    "REQUEST_TOO_LARGE": 413,
    "THROTTLED": 429,
    "AUTHORIZER_FAILURE": 500,
    "AUTHORIZER_CONFIGURATION_ERROR": 500,
    "INTEGRATION_FAILURE": 502,
}


@dataclass
class HttpRequest:
    method: str
    path: str  # as sent: still percent-encoded
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source_ip: str = "127.0.0.1"


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    function: str | None = None


class KeyThrottle:
    """The per-key usage plan as a token bucket per key: each holds up to `burst` requests and refills at `rate` a
    second; a request finding its key's bucket empty is refused with how long until a token comes back."""

    def __init__(self, throttle: Throttle, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst = throttle.rate, throttle.burst
        self._clock = clock
        self._lock = threading.Lock()  # requests are served on threads of their own
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, key: str) -> float | None:
        """None when the key may make the request now; else the seconds until it may."""
        with self._lock:
            now = self._clock()
            tokens, counted = self._buckets.get(key, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - counted) * self._rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self._rate


class Gateway:
    def __init__(
        self,
        template: Template,
        runtime: LambdaRuntime,
        per_key: Throttle | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        """`per_key`: the per-key limit (default: the template's usage plan; a rate of 0 turns it off)."""
        self._template = template
        self._runtime = runtime
        self._audit = audit
        limit = per_key or template.per_key_throttle
        # The functions make no API Gateway API keys here (OPSCORE_PER_KEY_LIMITS=gateway): this is the usage plan.
        self._throttle = KeyThrottle(limit) if limit is not None and limit.rate > 0 else None
        # Literal segments win over {parameters}, as in API Gateway.
        self._routes = sorted(template.routes, key=lambda route: route.path.count("{"))

    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return self.payload_too_large()
        route, params = self._match(request.method, request.path)
        if route is None:
            return self._gateway_response("MISSING_AUTHENTICATION_TOKEN", request_id, "Missing Authentication Token")
        event = self._proxy_event(request, route, params, request_id)
        if route.authorized and self._template.authorizer is not None:
            denied = self._authorize(event, request_id)
            if denied is not None:
                return denied
        try:
            result = self._runtime.invoke(route.function, event)
        except Exception:  # a handler that raises is a 502 in AWS; ours never should, so say it loudly
            return self._gateway_response("INTEGRATION_FAILURE", request_id, "Internal server error", status=502)
        return self._integration_response(result, request_id, route.function)

    def payload_too_large(self) -> HttpResponse:
        """For a body over API Gateway's limit, answered before it is read."""
        return self._gateway_response("REQUEST_TOO_LARGE", str(uuid.uuid4()), "Request Too Long")

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self._routes:
            params = route.match(path)
            if params is not None and route.method in (method, "ANY"):
                return route, params
        return None, {}

    def _proxy_event(
        self, request: HttpRequest, route: Route, params: dict[str, str], request_id: str
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for name, value in request.query:
            query[name] = value
            multi_query.setdefault(name, []).append(value)
        try:
            body: str | None = request.body.decode() if request.body else None
            encoded = False
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(request.body).decode(), True
        stage = self._template.stage
        return {
            "resource": route.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            # As API Gateway REST does: `path` as sent, path parameters decoded.
            "pathParameters": {name: unquote(value) for name, value in params.items()} or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "resourcePath": route.path,
                "httpMethod": request.method,
                "path": f"/{stage}{request.path}",
                "stage": stage,
                "requestId": request_id,
                "extendedRequestId": request_id,
                "requestTimeEpoch": int(time.time() * 1000),
                "protocol": "HTTP/1.1",
                "identity": {"sourceIp": request.source_ip, "userAgent": headers.get("User-Agent")},
                "domainName": "localhost",
            },
            "body": body,
            "isBase64Encoded": encoded,
        }

    def _authorize(self, event: dict[str, Any], request_id: str) -> HttpResponse | None:
        """Run the REQUEST authorizer as API Gateway does; on success put its context into the event."""
        authorizer = self._template.authorizer
        assert authorizer is not None
        present = {name.lower() for name in event["headers"] or {}}
        if any(header.lower() not in present for header in authorizer.identity_headers):
            self._refused(event, 401, {})
            return self._gateway_response("UNAUTHORIZED", request_id, "Unauthorized")
        method_arn = (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{event['requestContext']['stage']}/"
            f"{event['httpMethod']}{event['path']}"
        )
        authorizer_event = {key: value for key, value in event.items() if key not in ("body", "isBase64Encoded")}
        authorizer_event.update(type="REQUEST", methodArn=method_arn)
        try:
            result = self._runtime.invoke(authorizer.function, authorizer_event)
        except Exception as error:
            if str(error) == "Unauthorized":
                return self._gateway_response("UNAUTHORIZED", request_id, "Unauthorized")
            return self._gateway_response("AUTHORIZER_FAILURE", request_id, "Authorizer failure")
        if not policy_allows(result.get("policyDocument", {}), method_arn):
            self._refused(event, 403, result.get("context") or {})
            return self._gateway_response("ACCESS_DENIED", request_id, "User is not authorized to access this resource")
        throttled = self._throttled(result, request_id)
        if throttled is not None:
            return throttled
        event["requestContext"]["authorizer"] = {
            **{name: str(value) for name, value in (result.get("context") or {}).items()},
            "principalId": result.get("principalId"),
            "integrationLatency": 0,
        }
        return None

    def _throttled(self, result: dict[str, Any], request_id: str) -> HttpResponse | None:
        """The usage plan's answer when the key is over its limit (keyed, as in AWS, by the API key the authorizer
        names; by its principal when it names none)."""
        if self._throttle is None:
            return None
        wait = self._throttle.take(str(result.get("usageIdentifierKey") or result.get("principalId")))
        if wait is None:
            return None
        response = self._gateway_response("THROTTLED", request_id, "Too Many Requests")
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    def _refused(self, event: dict[str, Any], status: int, caller: dict[str, Any]) -> None:
        """The audit line of a request refused here: who (from the authorizer's context), what, from where."""
        if self._audit is None:
            return
        fields = {
            "action": f"{event['httpMethod']} {event['resource'].removeprefix(API_BASE_PATH)}",
            "outcome": "denied",
            "status": status,
            "source_ip": event["requestContext"]["identity"]["sourceIp"],
            "key_id": caller.get("key_id"),
            "role": caller.get("role"),
            "caller_agent_id": caller.get("agent_id"),
            "path": event["path"],
        }
        self._audit(event["requestContext"]["requestId"], {name: v for name, v in fields.items() if v is not None})

    def _integration_response(self, result: Any, request_id: str, function: str) -> HttpResponse:
        if not isinstance(result, dict) or "statusCode" not in result:
            return self._gateway_response("INTEGRATION_FAILURE", request_id, "Internal server error", status=502)
        headers = {name: str(value) for name, value in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(value) for value in values)
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        headers["x-amzn-RequestId"] = request_id
        return HttpResponse(int(result["statusCode"]), headers, body, function)

    def _gateway_response(self, kind: str, request_id: str, message: str, status: int | None = None) -> HttpResponse:
        """API Gateway's own answer of type `kind`, from its template, else from DEFAULT_4XX/DEFAULT_5XX."""
        status = status or DEFAULT_STATUS.get(kind, 500)
        responses = self._template.gateway_responses
        configured = responses.get(kind)
        if configured is not None and configured.status is not None:
            status = configured.status
        fallback = responses.get("DEFAULT_4XX" if status < 500 else "DEFAULT_5XX")
        template = (configured or fallback or _PLAIN).template or _PLAIN.template
        body = template.replace("$context.requestId", request_id).replace(
            "$context.error.messageString", json.dumps(message)
        )
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": request_id, "x-amzn-ErrorType": kind}
        return HttpResponse(status, headers, body.encode())


# API Gateway's body when the template configures nothing at all.
_PLAIN = GatewayResponse(status=None, template='{"message": $context.error.messageString}')


def policy_allows(policy: dict[str, Any], method_arn: str) -> bool:
    """IAM evaluation for execute-api:Invoke: allowed when an Allow statement matches and no Deny does."""
    allowed = False
    for statement in policy.get("Statement", []):
        actions = _as_list(statement.get("Action"))
        if not any(action in ("execute-api:Invoke", "execute-api:*", "*") for action in actions):
            continue
        if any(_arn_pattern(resource).match(method_arn) for resource in _as_list(statement.get("Resource"))):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@lru_cache(maxsize=1024)
def _arn_pattern(resource: str) -> re.Pattern[str]:
    # IAM wildcards: '*' is any run of characters ('/' included), '?' any one character.
    return re.compile("^" + re.escape(resource).replace(r"\*", ".*").replace(r"\?", ".") + "$")
