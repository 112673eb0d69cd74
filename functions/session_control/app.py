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
from opscore.api.idempotency import IDEMPOTENCY_HEADER, checked_key, run_once
from opscore.api.resolver import json_response
from opscore.api.routes import ADMIN, Api, Request
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import IDEMPOTENCY_TABLE, RUNNER_SETTINGS, TABLE_NAME, require_settings
from opscore.sessions.models import AdHocTask, SessionStarted, TaskStarted, TriggerRequest

SETTINGS = require_settings(TABLE_NAME, IDEMPOTENCY_TABLE, *RUNNER_SETTINGS)
api = Api()


def _start_once(request: Request, body: dict[str, Any], start: Callable[[], BaseModel]) -> Any:
    """Run `start`, once per Idempotency-Key when the request carries one; its answer as JSON-ready data."""
    key = checked_key(request.header(IDEMPOTENCY_HEADER))

    def work() -> dict[str, Any]:
        return start().model_dump(mode="json")

    if key is None:
        return work()
    return run_once(
        key=key,
        principal=request.caller.key_id,
        agent_id=request.agent_id,
        request=body,
        work=work,
        context=request.lambda_context,
    )


@api.post("/agent/{agentId}/workflow", allow=ADMIN)
def trigger(request: Request) -> Response[str]:
    body = request.body(TriggerRequest)
    started = SessionStarted.model_validate(
        _start_once(
            request,
            body.model_dump(mode="json"),
            lambda: wiring.sessions().trigger(request.agent_id, body, triggered_by=request.caller.key_id),
        )
    )
    logger.append_keys(session_id=started.session_id, workflow_id=started.workflow_id)
    return json_response(202, started)


@api.post("/agent/{agentId}/tasks", allow=ADMIN)
def run_task(request: Request) -> Response[str]:
    task = request.body(AdHocTask)
    started = TaskStarted.model_validate(
        _start_once(
            request,
            {"ad_hoc_task": task.model_dump(mode="json")},  # never equal to a trigger's body under the same key
            lambda: wiring.sessions().run_task(request.agent_id, task, triggered_by=request.caller.key_id),
        )
    )
    logger.append_keys(session_id=started.session_id, task_id=started.task_id)
    return json_response(202, started)


@api.post("/agent/{agentId}/sessions/{sessionId}/cancel", allow=ADMIN, body=False)
def cancel(request: Request) -> Response[str]:
    cancelled = wiring.sessions().cancel(request.agent_id, request.session_id, cancelled_by=request.caller.key_id)
    return json_response(200, cancelled)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
