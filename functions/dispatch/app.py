"""dispatchTask: the runner queues a task attempt on its agent with its task token, and waits until the agent answers.

Invoked by a workflow's session runner: by each Task state (lambda:invoke.waitForTaskToken) with the task's route, the
session and a task token, and by its Record Failure state with {"runner_failed": ...}; and asynchronously with
{"serve": <agent id>} when an agent whose channel pushes can take work again (see opscore.invocations).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import TABLE_NAME, require_settings
from opscore.invocations import handle_dispatch_event

SETTINGS = require_settings(TABLE_NAME)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.set_correlation_id(context.aws_request_id)  # a runner's call replaces it with its session (the execution)
    return handle_dispatch_event(event, context.get_remaining_time_in_millis)
