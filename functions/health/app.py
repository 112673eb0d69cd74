"""GET /v1/opscore/health: liveness, no key needed."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import __version__
from opscore.api.resolver import json_response
from opscore.api.routes import ANYONE, Api, Request
from opscore.core.contracts import Health
from opscore.core.observability import logger, metrics, tracer
from opscore.core.settings import require_settings

SETTINGS = require_settings()  # the health check reads nothing: it answers even where the table is misconfigured
api = Api()


@api.get("/health", allow=ANYONE)
def health(request: Request) -> Response[str]:
    return json_response(200, Health(version=__version__))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
