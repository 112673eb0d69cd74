"""POST /v1/opscore/agent/{agentId}/state (setState): an agent reports its lifecycle state (and wakes its queue);
DELETE /v1/opscore/agent/{agentId}/quarantine: an admin lifts the agent's quarantine."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.agents.models import StateReport
from opscore.api.resolver import json_response
from opscore.api.routes import ADMIN, PATH_AGENT, Api, Request
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import DISPATCH_FUNCTION_ARN, TABLE_NAME, require_settings

SETTINGS = require_settings(TABLE_NAME, DISPATCH_FUNCTION_ARN)
api = Api()


@api.post("/agent/{agentId}/state", allow=PATH_AGENT)
def set_state(request: Request) -> Response[str]:
    accepted = wiring.registry().report_state(request.agent_id, request.body(StateReport))
    wiring.waker().state_changed(accepted)  # idle, or back from paused: its queue is served now
    return json_response(200, accepted)


@api.delete("/agent/{agentId}/quarantine", allow=ADMIN)
def lift_quarantine(request: Request) -> Response[str]:
    agent = wiring.registry().lift_by_admin(request.agent_id)
    wiring.waker().wake(request.agent_id)  # it may take work again: a pushing channel hands over what waits
    return json_response(200, agent)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
