"""PUT /v1/opscore/agent/{agentId}: register an agent, or re-sync its registration from AgentKit."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.agents.models import RegistrationRequest
from opscore.api.resolver import json_response
from opscore.api.routes import PATH_AGENT, Api, Request
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import TABLE_NAME, require_settings

SETTINGS = require_settings(TABLE_NAME)
api = Api()


@api.put("/agent/{agentId}", allow=PATH_AGENT)
def register(request: Request) -> Response[str]:
    registration = wiring.registry().register(request.agent_id, request.body(RegistrationRequest))
    return json_response(201 if registration.created else 200, registration.agent)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
