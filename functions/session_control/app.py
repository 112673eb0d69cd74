"""POST /v1/opscore/agent/{agentId}/workflow (startSession), .../tasks (an ad-hoc task) and
.../sessions/{sessionId}/cancel, for admins.
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from opscore import wiring
from opscore.api.access import API_BASE_PATH
from opscore.api.http import (
    agent_id_from_path,
    build_resolver,
    caller,
    json_response,
    path_value,
    read_json,
    require_admin,
)
from opscore.api.idempotency import IDEMPOTENCY_HEADER, checked_key, run_once
from opscore.core.observability import logger, metrics, tracer
from opscore.keys.models import Principal
from opscore.sessions.models import SESSION_ID_PATTERN, AdHocTask, SessionStarted, TaskStarted, TriggerRequest

app = build_resolver()


def _admin_and_agent(raw_agent_id: str) -> tuple[Principal, str]:
    admin = caller(app.current_event)
    require_admin(admin)  # before the body is read: an agent key learns nothing about what it may not send
    return admin, agent_id_from_path((app.current_event.path_parameters or {}).get("agentId", raw_agent_id))


def _start_once(admin: Principal, agent_id: str, request: dict[str, Any], start: Callable[[], BaseModel]) -> Any:
    """Run `start`, once per Idempotency-Key when the request carries one; its answer as JSON-ready data."""
    key = checked_key(app.current_event.headers.get(IDEMPOTENCY_HEADER))

    def work() -> dict[str, Any]:
        return start().model_dump(mode="json")

    if key is None:
        return work()
    return run_once(
        key=key, principal=admin.key_id, agent_id=agent_id, request=request, work=work, context=app.lambda_context
    )


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/workflow")
def trigger(agent_id: str) -> Response[str]:
    admin, agent_id = _admin_and_agent(agent_id)
    request = read_json(app.current_event, TriggerRequest)
    started = SessionStarted.model_validate(
        _start_once(
            admin,
            agent_id,
            request.model_dump(mode="json"),
            lambda: wiring.sessions().trigger(agent_id, request, triggered_by=admin.key_id),
        )
    )
    logger.append_keys(session_id=started.session_id)
    return json_response(202, started)


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/tasks")
def run_task(agent_id: str) -> Response[str]:
    admin, agent_id = _admin_and_agent(agent_id)
    task = read_json(app.current_event, AdHocTask)
    started = TaskStarted.model_validate(
        _start_once(
            admin,
            agent_id,
            {"ad_hoc_task": task.model_dump(mode="json")},  # never equal to a trigger's body under the same key
            lambda: wiring.sessions().run_task(agent_id, task, triggered_by=admin.key_id),
        )
    )
    logger.append_keys(session_id=started.session_id, task_id=started.task_id)
    return json_response(202, started)


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/sessions/<session_id>/cancel")
def cancel(agent_id: str, session_id: str) -> Response[str]:
    admin = caller(app.current_event)
    require_admin(admin)
    parameters = app.current_event.path_parameters or {}
    agent_id = agent_id_from_path(parameters.get("agentId", agent_id))
    session_id = path_value(parameters.get("sessionId", session_id), "sessionId", SESSION_ID_PATTERN)
    logger.append_keys(session_id=session_id)
    return json_response(200, wiring.sessions().cancel(agent_id, session_id, cancelled_by=admin.key_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
