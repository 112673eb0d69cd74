"""updateSession: the session runner's record of each transition; returns the step the runner takes next.

Invoked by the state machine with {"event": ..., "state": <runner state>}; the events are started, succeeded,
failed (an attempt ended) and runner_failed (the runner itself could not go on).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import DISPATCH_FUNCTION_ARN, TABLE_NAME, require_settings
from opscore.sessions.runner import RunnerState

SETTINGS = require_settings(TABLE_NAME, DISPATCH_FUNCTION_ARN)


@logger.inject_lambda_context(correlation_id_path="state.session_id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = RunnerState.model_validate(event["state"])
    logger.append_keys(session_id=state.session_id, agent_id=state.agent_id)
    runner = wiring.session_runner()
    match event["event"]:
        case "started":
            step = runner.started(state)
        case "succeeded":
            step = runner.succeeded(state)
        case "failed":
            step = runner.failed(state)
        case "runner_failed":
            step = runner.runner_failed(state)
        case other:
            raise ValueError(f"unknown runner event {other!r}")
    return step.model_dump(mode="json")
