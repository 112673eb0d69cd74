"""dispatchTask: the runner hands a task attempt over with its task token, and waits until the agent answers.

Invoked by the state machine (lambda:invoke.waitForTaskToken) with {"state": <runner state>, "token": <task token>}.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.observability import logger, metrics, tracer
from opscore.session_runner import RunnerState


@logger.inject_lambda_context(correlation_id_path="state.session_id", clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    state = RunnerState.model_validate(event["state"])
    logger.append_keys(session_id=state.session_id, agent_id=state.agent_id)
    return {"dispatch": wiring.session_runner().dispatch(state, event["token"])}
