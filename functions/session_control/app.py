"""POST /v1/opscore/agent/{agentId}/workflow (startSession), .../tasks (an ad-hoc task) and
.../sessions/{sessionId}/cancel, for admins.
"""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.access import API_BASE_PATH
from opscore.http import agent_id_from_path, build_resolver, caller, json_response, path_value, read_json, require_admin
from opscore.idempotency import IDEMPOTENCY_HEADER, checked_key, run_once
from opscore.observability import logger, metrics, tracer
from opscore.session_models import SESSION_ID_PATTERN, AdHocTask, SessionStarted, TaskStarted, TriggerRequest

app = build_resolver()


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/workflow")
def trigger(agent_id: str) -> Response[str]:
    admin = caller(app.current_event)
    require_admin(admin)
    agent_id = agent_id_from_path((app.current_event.path_parameters or {}).get("agentId", agent_id))
    request = read_json(app.current_event, TriggerRequest)
    key = checked_key(app.current_event.headers.get(IDEMPOTENCY_HEADER))

    def start() -> dict[str, Any]:
        return wiring.sessions().trigger(agent_id, request, triggered_by=admin.key_id).model_dump(mode="json")

    if key is None:
        started = start()
    else:
        body = request.model_dump(mode="json")
        started = run_once(
            key=key, principal=admin.key_id, agent_id=agent_id, request=body, work=start, context=app.lambda_context
        )
    logger.append_keys(session_id=started["session_id"])
    return json_response(202, SessionStarted.model_validate(started))


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/tasks")
def run_task(agent_id: str) -> Response[str]:
    admin = caller(app.current_event)
    require_admin(admin)
    agent_id = agent_id_from_path((app.current_event.path_parameters or {}).get("agentId", agent_id))
    task = read_json(app.current_event, AdHocTask)
    key = checked_key(app.current_event.headers.get(IDEMPOTENCY_HEADER))

    def start() -> dict[str, Any]:
        return wiring.sessions().run_task(agent_id, task, triggered_by=admin.key_id).model_dump(mode="json")

    if key is None:
        started = start()
    else:
        body = {"ad_hoc_task": task.model_dump(mode="json")}  # never equal to a trigger's body under the same key
        started = run_once(
            key=key, principal=admin.key_id, agent_id=agent_id, request=body, work=start, context=app.lambda_context
        )
    logger.append_keys(session_id=started["session_id"], task_id=started["task_id"])
    return json_response(202, TaskStarted.model_validate(started))


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
