"""The health sweep, run on a schedule: expired leases fail their attempts, silent agents are marked offline."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = wiring.agent_health().sweep()
    pushed = sum(wiring.dispatcher().serve(agent_id) for agent_id in sorted(report.agents_freed))
    logger.info(
        "sweep done",
        extra={"leases_expired": report.leases_expired, "agents_offline": report.agents_offline, "pushed": pushed},
    )
    return {"leases_expired": report.leases_expired, "agents_offline": report.agents_offline, "pushed": pushed}
