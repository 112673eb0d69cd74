"""dispatchTask: the runner queues a task attempt on its agent with its task token, and waits until the agent answers.

Invoked by the state machine (lambda:invoke.waitForTaskToken) with {"state": <runner state>, "token": <task token>};
and asynchronously with {"serve": <agent id>} when an agent whose channel pushes can take work again.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.core.observability import logger, metrics, tracer
from opscore.sessions.records import TaskRef
from opscore.sessions.runner import RunnerState

# Time kept back from the function's timeout: the last delivery started may take this long (3 tries of 5 s).
DELIVERY_RESERVE_SECONDS = 20.0


def _budget(context: LambdaContext) -> float:
    return max(0.0, context.get_remaining_time_in_millis() / 1000 - DELIVERY_RESERVE_SECONDS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "serve" in event:
        agent_id = str(event["serve"])
        logger.append_keys(agent_id=agent_id)
        return {"pushed": wiring.dispatcher().serve(agent_id, budget_seconds=_budget(context))}
    state = RunnerState.model_validate(event["state"])
    logger.set_correlation_id(state.session_id)
    logger.append_keys(session_id=state.session_id, agent_id=state.agent_id)
    outcome = wiring.session_runner().dispatch(state, event["token"])
    if outcome != "session_ended":  # a repeated dispatch serves too: the first may have stopped before it could
        task = TaskRef(state.session_id, state.current().task_index or 0, state.current().sequence)
        try:
            wiring.dispatcher().enqueued(state.agent_id, task, budget_seconds=_budget(context))
        except Exception:
            logger.exception("serving the agent's queue failed; its next wake or pull takes the task")
    return {"dispatch": outcome}
