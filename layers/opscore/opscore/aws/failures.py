"""Which AWS failures are transient: a service's own 5xx (DynamoDB's InternalServerError, Step Functions'
ServiceUnavailable), or a call that got no answer (a timeout, a dropped connection). Throttling has its own error
(Throttled); these become ServiceUnavailable, so an API caller gets a 503 to retry and the session runner's Lambda
retrier retries a step, instead of a 500 or a failed session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from opscore.core.errors import ServiceUnavailable

TRANSIENT_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout"}
)


def is_transient(error: BaseException) -> bool:
    """True for an AWS failure worth retrying as it is: the service's own 5xx, or no answer at all."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_CODES or status >= 500
    return isinstance(error, (ConnectionError, HTTPClientError))


def transient_cause(error: BaseException) -> BaseException | None:
    """The transient AWS failure behind `error` (it, or what it was raised from), if any: Powertools' idempotency
    wraps the table's errors in its own."""
    seen: BaseException | None = error
    for _ in range(3):
        if seen is None:
            return None
        if is_transient(seen):
            return seen
        seen = seen.__cause__
    return None


def unavailable() -> ServiceUnavailable:
    # Which service and call failed goes to the log, with the trace; the caller only needs to know to retry.
    return ServiceUnavailable("a service Ops-Core depends on failed for a moment; nothing was lost, retry shortly")


@contextmanager
def transient_as_unavailable() -> Iterator[None]:
    """Raise a transient AWS failure as ServiceUnavailable (a name the session runner retries); the rest as it is."""
    try:
        yield
    except Exception as error:
        cause = transient_cause(error)
        if cause is None:
            raise
        raise unavailable() from error
