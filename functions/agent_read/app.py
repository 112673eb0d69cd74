"""GET /v1/opscore/agent/{agentId}, its state history, its sessions and its task queue: the read side of agents."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.access import API_BASE_PATH
from opscore.api.http import authorised_agent_id, build_resolver, json_response, path_value, query_choice, query_int
from opscore.core.observability import logger, metrics, tracer
from opscore.dispatch.models import QUEUE_STATUSES
from opscore.sessions.models import SESSION_ID_PATTERN

app = build_resolver()


@app.get(f"{API_BASE_PATH}/agent/<agent_id>")
def get_agent(agent_id: str) -> Response[str]:
    return json_response(200, wiring.registry().get(authorised_agent_id(app.current_event, agent_id)))


@app.get(f"{API_BASE_PATH}/agent/<agent_id>/state/history")
def get_history(agent_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    limit = query_int(app.current_event, "limit", default=20, minimum=1, maximum=100)
    next_token = app.current_event.get_query_string_value("next_token")
    return json_response(200, wiring.registry().history(agent_id, limit, next_token))


@app.get(f"{API_BASE_PATH}/agent/<agent_id>/sessions")
def list_sessions(agent_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    limit = query_int(app.current_event, "limit", default=20, minimum=1, maximum=100)
    next_token = app.current_event.get_query_string_value("next_token")
    return json_response(200, wiring.sessions().list(agent_id, limit, next_token))


@app.get(f"{API_BASE_PATH}/agent/<agent_id>/sessions/<session_id>")
def get_session(agent_id: str, session_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    raw = (app.current_event.path_parameters or {}).get("sessionId", session_id)
    session_id = path_value(raw, "sessionId", SESSION_ID_PATTERN)
    logger.append_keys(session_id=session_id)
    return json_response(200, wiring.sessions().get(agent_id, session_id))


@app.get(f"{API_BASE_PATH}/agent/<agent_id>/tasks")
def list_tasks(agent_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    status = query_choice(app.current_event, "status", QUEUE_STATUSES, default="queued")
    limit = query_int(app.current_event, "limit", default=50, minimum=1, maximum=100)
    next_token = app.current_event.get_query_string_value("next_token")
    return json_response(200, wiring.dispatcher().queue(agent_id, status, limit, next_token))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
