"""Run a request once per Idempotency-Key, with Powertools idempotency on its own DynamoDB table.

The key is the caller's key id, the agent and the header together: a header alone would let one caller receive
another caller's response. The request itself is the payload Powertools validates, so the same key sent with a
different request is refused (409) instead of answered with the first request's response.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from opscore.aws.dynamodb import THROTTLING_CODES
from opscore.core.errors import Conflict, FieldProblem, Throttled, ValidationFailed
from opscore.core.observability import logger
from opscore.core.settings import settings

IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces: what a client generates
REMEMBER_SECONDS = 24 * 3600


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class RequestInProgress(Conflict):
    code = "request_in_progress"


def checked_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not KEY_PATTERN.fullmatch(raw):
        raise ValidationFailed(
            f"{IDEMPOTENCY_HEADER} must be 1 to 255 printable ASCII characters without spaces",
            [FieldProblem(IDEMPOTENCY_HEADER, "1 to 255 printable ASCII characters", location="header")],
        )
    return raw


@cache
def _persistence() -> tuple[Any, Any]:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    table = settings().idempotency_table
    if not table:
        raise RuntimeError("IDEMPOTENCY_TABLE is not set for this function")
    config = IdempotencyConfig(
        event_key_jmespath="[principal, agent_id, key]",
        payload_validation_jmespath="request",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=REMEMBER_SECONDS,
    )
    # The function's own DynamoDB client: Powertools would otherwise build a second boto3 session and client.
    from opscore.wiring import dynamodb

    return DynamoDBPersistenceLayer(table_name=table, boto3_client=dynamodb()), config


def run_once(
    *,
    key: str,
    principal: str,
    agent_id: str,
    request: dict[str, Any],
    work: Callable[[], dict[str, Any]],
    context: Any,
) -> dict[str, Any]:
    """`work()`'s answer, computed once per (principal, agent, key); a repeat gets the stored answer."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    persistence, config = _persistence()
    config.register_lambda_context(context)
    answered: list[dict[str, Any]] = []

    @idempotent_function(  # type: ignore[untyped-decorator]  # Powertools does not type this decorator
        data_keyword_argument="call", persistence_store=persistence, config=config
    )
    def trigger_once(call: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001 - Powertools keys on `call`
        answered.append(work())
        return answered[-1]

    try:
        result: dict[str, Any] = trigger_once(
            call={"principal": principal, "agent_id": agent_id, "key": key, "request": request}
        )
    except IdempotencyPersistenceLayerError as error:
        if answered:
            # The work is done (a session started); only keeping its answer for the key failed. Answering with an
            # error would invite a resend, which starts the work again once the key's in-progress mark expires.
            logger.warning(
                "answer not kept for its Idempotency-Key",
                exc_info=True,
                extra={"event": "idempotency_answer_not_kept"},
            )
            return answered[-1]
        if _throttled(error):
            raise Throttled("Ops-Core is receiving more requests than it can take; retry shortly") from error
        raise  # nothing ran; a DynamoDB 5xx behind it is answered 503 by the resolver
    except IdempotencyValidationError:
        raise IdempotencyKeyReused(
            f"{IDEMPOTENCY_HEADER} {key!r} was already used for a different request to this agent"
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise RequestInProgress(
            f"a request with {IDEMPOTENCY_HEADER} {key!r} is still in progress; retry shortly"
        ) from None
    return result


def _throttled(error: Exception) -> bool:
    """The idempotency table throttled the key's record (Powertools wraps the ClientError in its own error)."""
    from botocore.exceptions import ClientError

    cause = error.__cause__
    return isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in THROTTLING_CODES


def reset() -> None:
    _persistence.cache_clear()
