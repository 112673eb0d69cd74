"""/v1/opscore/workflows (createWorkflow, list, get): versioned workflow templates, for admins."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.resolver import json_response
from opscore.api.routes import ADMIN, Api, Request
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import RUNNER_SETTINGS, TABLE_NAME, require_settings
from opscore.workflows.templates import WorkflowTemplate

SETTINGS = require_settings(TABLE_NAME, *RUNNER_SETTINGS)
api = Api()


@api.post("/workflows", allow=ADMIN)
def create_workflow(request: Request) -> Response[str]:
    template = request.body(WorkflowTemplate, allow_yaml=True)
    result = wiring.workflows().create(template, created_by=request.caller.key_id)
    logger.append_keys(workflow_id=result.created.workflow_id)  # what the audit line names
    return json_response(201 if result.new_version else 200, result.created)


@api.get("/workflows", allow=ADMIN)
def list_workflows(request: Request) -> Response[str]:
    request.takes_query("limit", "next_token")
    limit = request.query_int("limit", default=20, minimum=1, maximum=100)
    return json_response(200, wiring.workflows().list(limit, request.query("next_token")))


@api.get("/workflows/{workflowId}", allow=ADMIN)
def get_workflow(request: Request) -> Response[str]:
    request.takes_query("version")
    version = request.optional_query_int("version", minimum=1, maximum=9_999_999_999)
    return json_response(200, wiring.workflows().get(request.workflow_id, version))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
