"""PUT /v1/opscore/agent/{agentId}: register an agent, or re-sync its registration from AgentKit."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.agents.models import RegistrationRequest
from opscore.api.access import API_BASE_PATH
from opscore.api.http import authorised_agent_id, build_resolver, json_response, read_json
from opscore.core.observability import logger, metrics, tracer

app = build_resolver()


@app.put(f"{API_BASE_PATH}/agent/<agent_id>")
def register(agent_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    registration = wiring.registry().register(agent_id, read_json(app.current_event, RegistrationRequest))
    return json_response(201 if registration.created else 200, registration.agent)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
