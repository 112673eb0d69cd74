"""API Gateway REQUEST authorizer: resolves X-API-Key to an admin or one agent, as an IAM policy."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import APIGatewayAuthorizerRequestEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from opscore import wiring
from opscore.api.access import API_BASE_PATH, authorizer_response
from opscore.api.audit import write_key_refused
from opscore.core.errors import Unauthorized
from opscore.core.observability import MetricUnit, logger, metrics, tracer
from opscore.core.settings import TABLE_NAME, USAGE_KEY_NAMESPACE, require_settings, settings
from opscore.keys.usage import usage_identifier

SETTINGS = require_settings(TABLE_NAME, USAGE_KEY_NAMESPACE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def lambda_handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict[str, Any]:
    principal = wiring.api_keys().authenticate(event.headers.get("x-api-key"))
    if principal is None:
        write_key_refused(
            event.http_method,
            event.resource.removeprefix(API_BASE_PATH),
            event.path,
            event.request_context.identity.source_ip,
            event.headers.get("x-api-key"),
        )
        metrics.add_metric(name="AuthFailures", unit=MetricUnit.Count, value=1)
        # API Gateway turns exactly this error message into a 401; any other failure would become a 500.
        raise Unauthorized("Unauthorized")
    logger.append_keys(key_id=principal.key_id, agent_id=principal.agent_id)
    usage_key = usage_identifier(settings().usage_key_namespace, principal.key_id)
    return authorizer_response(principal, event.method_arn, usage_key)
