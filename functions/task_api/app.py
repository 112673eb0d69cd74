"""POST /v1/opscore/agent/{agentId}/tasks/next, .../tasks/{taskId}/result and .../heartbeat: an agent's work."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.access import API_BASE_PATH
from opscore.api.http import authorised_agent_id, build_resolver, empty_response, json_response, path_value, read_json
from opscore.core.observability import logger, metrics, tracer
from opscore.dispatch.models import TaskResult
from opscore.sessions.models import TASK_ID_PATTERN

app = build_resolver()


def _task_id(raw: str) -> str:
    task_id = path_value((app.current_event.path_parameters or {}).get("taskId", raw), "taskId", TASK_ID_PATTERN)
    logger.append_keys(task_id=task_id)
    return task_id


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/tasks/next")
def lease_next(agent_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    task = wiring.dispatcher().next_task(agent_id)
    if task is None:
        return empty_response(204)
    logger.append_keys(task_id=task.task_id, session_id=task.session_id)
    return json_response(200, task)


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/tasks/<task_id>/result")
def report_result(agent_id: str, task_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    task_id = _task_id(task_id)
    result = read_json(app.current_event, TaskResult)
    accepted = wiring.task_results().report(agent_id, task_id, result)
    wiring.waker().wake(agent_id)  # a slot came back: a pushing channel hands over the next task
    return json_response(200, accepted)


@app.post(f"{API_BASE_PATH}/agent/<agent_id>/tasks/<task_id>/heartbeat")
def heartbeat(agent_id: str, task_id: str) -> Response[str]:
    agent_id = authorised_agent_id(app.current_event, agent_id)
    return json_response(200, wiring.dispatcher().heartbeat(agent_id, _task_id(task_id)))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
