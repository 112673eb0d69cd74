"""The one place that creates the Powertools logger, tracer and metrics every module shares.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE, set for every
function in template.yaml's Globals.

Tracing: with active tracing (template.yaml), Lambda, API Gateway and Step Functions record traces of a sampled share
of requests (by default the first each second and 5% of the rest), with each invocation's init and duration, without
any code here. The X-Ray SDK, which Powertools' Tracer needs for
subsegments (one per AWS call), costs about half a second of every cold start, so it is loaded only when
OPSCORE_TRACING is `sdk` (the TracingMode parameter of the stack), for when a deeper trace is worth that.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = Callable[..., Any]


class ServiceTracing:
    """Stands in for Powertools' Tracer when the X-Ray SDK is not loaded: the decorators change nothing."""

    def capture_lambda_handler(self, lambda_handler: Handler | None = None, **_: Any) -> Any:
        if lambda_handler is not None:
            return lambda_handler
        return lambda handler: handler

    def capture_method(self, method: Handler | None = None, **_: Any) -> Any:
        if method is not None:
            return method
        return lambda function: function


def _tracer() -> Tracer:
    if os.environ.get("OPSCORE_TRACING", "service") == "sdk":
        from aws_lambda_powertools import Tracer

        return Tracer()
    return cast("Tracer", ServiceTracing())


class EventNamed(logging.Filter):
    """Every line names its event (docs/logging.md): one logged without its own (a library's, say) is `log`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "event"):
            record.event = "log"
        return True


logger = Logger(use_rfc3339=True)  # ISO 8601 timestamps, which `opscore logs` can filter by window
logger.addFilter(EventNamed())
tracer = _tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
