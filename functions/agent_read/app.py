"""GET /v1/opscore/agents, and /v1/opscore/agent/{agentId} with its state history, sessions (and their traces), task
queue and stats: the read side of agents; and GET /v1/opscore/sessions/{sessionId}/trace for an admin."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.resolver import json_response
from opscore.api.routes import ADMIN, PATH_AGENT, Api, Request
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import TABLE_NAME, require_settings
from opscore.dispatch.models import QUEUE_STATUSES

SETTINGS = require_settings(TABLE_NAME)
api = Api()


@api.get("/agents", allow=ADMIN)
def list_agents(request: Request) -> Response[str]:
    request.takes_query("state", "limit", "next_token")
    from opscore.agents.models import AgentState

    state = request.optional_query_choice("state", tuple(state.value for state in AgentState))
    limit = request.query_int("limit", default=20, minimum=1, maximum=100)
    agents = wiring.registry().list_agents(AgentState(state) if state else None, limit, request.query("next_token"))
    return json_response(200, agents)


@api.get("/agent/{agentId}/stats", allow=PATH_AGENT)
def get_stats(request: Request) -> Response[str]:
    request.takes_query("window")
    from opscore.agents.stats import DEFAULT_WINDOW, window_seconds

    window = request.query("window") or DEFAULT_WINDOW
    return json_response(200, wiring.agent_analytics().stats(request.agent_id, window, window_seconds(window)))


@api.get("/agent/{agentId}", allow=PATH_AGENT)
def get_agent(request: Request) -> Response[str]:
    return json_response(200, wiring.registry().get(request.agent_id))


@api.get("/agent/{agentId}/state/history", allow=PATH_AGENT)
def get_history(request: Request) -> Response[str]:
    request.takes_query("limit", "next_token", "since", "until")
    limit = request.query_int("limit", default=20, minimum=1, maximum=100)
    since, until = request.query_window()
    history = wiring.registry().history(request.agent_id, limit, request.query("next_token"), since, until)
    return json_response(200, history)


@api.get("/agent/{agentId}/sessions", allow=PATH_AGENT)
def list_sessions(request: Request) -> Response[str]:
    request.takes_query("limit", "next_token", "status", "workflow_id", "since", "until")
    limit = request.query_int("limit", default=20, minimum=1, maximum=100)
    since, until = request.query_window()
    # Imported here: only this route reads them (the others' cold start stays as it was).
    from opscore.sessions.models import SessionStatus
    from opscore.sessions.store import SessionFilter
    from opscore.workflows.templates import WORKFLOW_NAME_PATTERN

    only = SessionFilter(
        status=request.optional_query_choice("status", tuple(status.value for status in SessionStatus)),
        workflow_id=request.query_matching("workflow_id", WORKFLOW_NAME_PATTERN),
        since=since,
        until=until,
    )
    return json_response(200, wiring.sessions().list(request.agent_id, limit, request.query("next_token"), only))


@api.get("/agent/{agentId}/sessions/{sessionId}", allow=PATH_AGENT)
def get_session(request: Request) -> Response[str]:
    return json_response(200, wiring.sessions().get(request.agent_id, request.session_id))


@api.get("/agent/{agentId}/sessions/{sessionId}/trace", allow=PATH_AGENT)
def get_trace(request: Request) -> Response[str]:
    return json_response(200, wiring.sessions().trace(request.agent_id, request.session_id))


@api.get("/sessions/{sessionId}/trace", allow=ADMIN)
def get_trace_by_session(request: Request) -> Response[str]:
    """The same trace for an admin who knows only the session id."""
    return json_response(200, wiring.sessions().trace_of(request.session_id))


@api.get("/agent/{agentId}/tasks", allow=PATH_AGENT)
def list_tasks(request: Request) -> Response[str]:
    request.takes_query("status", "limit", "next_token")
    status = request.query_choice("status", QUEUE_STATUSES, default="queued")
    limit = request.query_int("limit", default=50, minimum=1, maximum=100)
    return json_response(200, wiring.dispatcher().queue(request.agent_id, status, limit, request.query("next_token")))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
