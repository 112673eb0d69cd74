"""/v1/opscore/keys: admins issue, list, rotate and revoke API keys."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.agents.models import AGENT_ID_PATTERN
from opscore.api.resolver import empty_response, json_response
from opscore.api.routes import ADMIN, Api, Request
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import TABLE_NAME, USAGE_KEY_NAMESPACE, USAGE_PLAN_NAME, require_settings
from opscore.keys.models import KeyRequest, RotateRequest

SETTINGS = require_settings(TABLE_NAME, USAGE_PLAN_NAME, USAGE_KEY_NAMESPACE)
api = Api()


@api.post("/keys", allow=ADMIN)
def create_key(request: Request) -> Response[str]:
    created = wiring.api_keys().create(request.body(KeyRequest), created_by=request.caller.key_id)
    logger.append_keys(target_key_id=created.key_id, agent_id=created.agent_id)  # what the audit line names
    return json_response(201, created)


@api.get("/keys", allow=ADMIN)
def list_keys(request: Request) -> Response[str]:
    request.takes_query("agent_id", "limit", "next_token")
    agent_id = request.query_matching("agent_id", AGENT_ID_PATTERN)
    limit = request.query_int("limit", default=20, minimum=1, maximum=100)
    return json_response(200, wiring.api_keys().list(agent_id, limit, request.query("next_token")))


@api.post("/keys/{keyId}/rotate", allow=ADMIN)
def rotate_key(request: Request) -> Response[str]:
    # The body is optional: no body rotates with no expiry for the new key and none added to the old one.
    body = request.body(RotateRequest) if request.event.body else RotateRequest()
    rotated = wiring.api_keys().rotate(request.key_id, body, rotated_by=request.caller.key_id)
    return json_response(201, rotated)


@api.delete("/keys/{keyId}", allow=ADMIN)
def revoke_key(request: Request) -> Response[str]:
    wiring.api_keys().revoke(request.key_id, revoked_by=request.caller.key_id)  # which checks the key id (400)
    return empty_response(204)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
