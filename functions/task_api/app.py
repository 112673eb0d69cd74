"""POST /v1/opscore/agent/{agentId}/tasks/next, .../tasks/{taskId}/result and .../heartbeat: an agent's work."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.resolver import empty_response, json_response
from opscore.api.routes import PATH_AGENT, Api, Request
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import DISPATCH_FUNCTION_ARN, TABLE_NAME, require_settings
from opscore.dispatch.models import TaskResult

SETTINGS = require_settings(TABLE_NAME, DISPATCH_FUNCTION_ARN)
api = Api()


@api.post("/agent/{agentId}/tasks/next", allow=PATH_AGENT, body=False)
def lease_next(request: Request) -> Response[str]:
    task = wiring.dispatcher().next_task(request.agent_id)
    if task is None:
        return empty_response(204)
    logger.append_keys(task_id=task.task_id, session_id=task.session_id)
    return json_response(200, task)


@api.post("/agent/{agentId}/tasks/{taskId}/result", allow=PATH_AGENT)
def report_result(request: Request) -> Response[str]:
    accepted = wiring.task_results().report(request.agent_id, request.task_id, request.body(TaskResult))
    wiring.waker().wake(request.agent_id)  # a slot came back: a pushing channel hands over the next task
    return json_response(200, accepted)


@api.post("/agent/{agentId}/tasks/{taskId}/heartbeat", allow=PATH_AGENT, body=False)
def heartbeat(request: Request) -> Response[str]:
    return json_response(200, wiring.dispatcher().heartbeat(request.agent_id, request.task_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
