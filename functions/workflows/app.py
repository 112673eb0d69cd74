"""/v1/opscore/workflows (createWorkflow, list, get): versioned workflow templates, for admins."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.access import API_BASE_PATH
from opscore.api.http import (
    build_resolver,
    caller,
    json_response,
    optional_query_int,
    path_value,
    query_int,
    read_json,
    require_admin,
)
from opscore.core.observability import logger, metrics, tracer
from opscore.workflows.templates import WORKFLOW_NAME_PATTERN, WorkflowTemplate

app = build_resolver()


@app.post(f"{API_BASE_PATH}/workflows")
def create_workflow() -> Response[str]:
    admin = caller(app.current_event)
    require_admin(admin)
    template = read_json(app.current_event, WorkflowTemplate, allow_yaml=True)
    result = wiring.workflows().create(template, created_by=admin.key_id)
    return json_response(201 if result.new_version else 200, result.created)


@app.get(f"{API_BASE_PATH}/workflows")
def list_workflows() -> Response[str]:
    require_admin(caller(app.current_event))
    limit = query_int(app.current_event, "limit", default=20, minimum=1, maximum=100)
    next_token = app.current_event.get_query_string_value("next_token")
    return json_response(200, wiring.workflows().list(limit, next_token))


@app.get(f"{API_BASE_PATH}/workflows/<workflow_id>")
def get_workflow(workflow_id: str) -> Response[str]:
    require_admin(caller(app.current_event))
    raw = (app.current_event.path_parameters or {}).get("workflowId", workflow_id)
    workflow_id = path_value(raw, "workflowId", WORKFLOW_NAME_PATTERN)
    logger.append_keys(workflow_id=workflow_id)
    version = optional_query_int(app.current_event, "version", minimum=1, maximum=9_999_999_999)
    return json_response(200, wiring.workflows().get(workflow_id, version))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
