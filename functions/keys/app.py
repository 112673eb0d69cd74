"""POST /v1/opscore/keys and DELETE /v1/opscore/keys/{keyId}: admins issue and revoke API keys."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.access import API_BASE_PATH
from opscore.api.http import build_resolver, caller, empty_response, json_response, read_json, require_admin
from opscore.core.observability import logger, metrics, tracer
from opscore.keys.models import KeyRequest

app = build_resolver()


@app.post(f"{API_BASE_PATH}/keys")
def create_key() -> Response[str]:
    admin = caller(app.current_event)
    require_admin(admin)
    created = wiring.api_keys().create(read_json(app.current_event, KeyRequest), created_by=admin.key_id)
    return json_response(201, created)


@app.delete(f"{API_BASE_PATH}/keys/<key_id>")
def revoke_key(key_id: str) -> Response[str]:
    admin = caller(app.current_event)
    require_admin(admin)
    wiring.api_keys().revoke(key_id, revoked_by=admin.key_id)
    return empty_response(204)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
