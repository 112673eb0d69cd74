"""Which AWS failures are transient (a 503 to retry, a runner step retried) and which are not."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from opscore.aws.failures import is_transient, transient_as_unavailable, transient_cause
from opscore.core.errors import ServiceUnavailable


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "TransactWriteItems")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("InternalServerError", 500), True),  # DynamoDB
        (client_error("ServiceUnavailable", 503), True),  # Step Functions
        (client_error("SomethingNew", 502), True),  # any 5xx of the service's own
        (ReadTimeoutError(endpoint_url="https://dynamodb"), True),  # no answer
        (EndpointConnectionError(endpoint_url="https://dynamodb"), True),
        (client_error("ThrottlingException", 400), False),  # Throttled's business
        (client_error("ConditionalCheckFailedException", 400), False),
        (client_error("ValidationException", 400), False),  # our mistake: never retried as it is
        (ValueError("not AWS"), False),
    ],
)
def test_transient_failures_are_the_services_own_5xx_and_no_answer(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_transient_failure_behind_another_error_is_found_and_raised_as_service_unavailable() -> None:
    cause = client_error("InternalServerError", 500)
    wrapped = RuntimeError("the idempotency store failed")
    wrapped.__cause__ = cause
    assert transient_cause(wrapped) is cause

    with pytest.raises(ServiceUnavailable) as raised, transient_as_unavailable():
        raise wrapped
    assert raised.value.__cause__ is wrapped
    assert type(raised.value).__name__ == "ServiceUnavailable", "the name the runner's Lambda retrier lists"

    with pytest.raises(ValueError, match="not AWS"), transient_as_unavailable():
        raise ValueError("not AWS")
