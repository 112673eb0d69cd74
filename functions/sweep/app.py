"""The health sweep, run on a schedule: expired leases fail their attempts, silent agents are marked offline."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import TABLE_NAME, require_settings
from opscore.invocations import sweep_and_serve

SETTINGS = require_settings(TABLE_NAME)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    logger.set_correlation_id(context.aws_request_id)
    return sweep_and_serve(context.get_remaining_time_in_millis).as_dict()
