"""The health sweep, run on a schedule: expired leases fail their attempts, silent agents are marked offline."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.core.observability import logger, metrics, tracer

# Time kept back from the function's timeout for the last webhook delivery started (3 tries of 5 s).
DELIVERY_RESERVE_SECONDS = 20.0


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = wiring.agent_health().sweep()
    pushed = 0
    for agent_id in sorted(report.agents_freed):
        budget = context.get_remaining_time_in_millis() / 1000 - DELIVERY_RESERVE_SECONDS
        if budget <= 0:
            break  # the rest is served when those agents next report, or by the next sweep
        pushed += wiring.dispatcher().serve(agent_id, budget_seconds=budget)
    logger.info(
        "sweep done",
        extra={"leases_expired": report.leases_expired, "agents_offline": report.agents_offline, "pushed": pushed},
    )
    return {"leases_expired": report.leases_expired, "agents_offline": report.agents_offline, "pushed": pushed}
