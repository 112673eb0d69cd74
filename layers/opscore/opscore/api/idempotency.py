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

from opscore.core.errors import Conflict, FieldProblem, ValidationFailed
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
        IdempotencyValidationError,
    )

    persistence, config = _persistence()
    config.register_lambda_context(context)

    @idempotent_function(  # type: ignore[untyped-decorator]  # Powertools does not type this decorator
        data_keyword_argument="call", persistence_store=persistence, config=config
    )
    def trigger_once(call: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001 - Powertools keys on `call`
        return work()

    try:
        result: dict[str, Any] = trigger_once(
            call={"principal": principal, "agent_id": agent_id, "key": key, "request": request}
        )
    except IdempotencyValidationError:
        raise IdempotencyKeyReused(
            f"{IDEMPOTENCY_HEADER} {key!r} was already used for a different request to this agent"
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise RequestInProgress(
            f"a request with {IDEMPOTENCY_HEADER} {key!r} is still in progress; retry shortly"
        ) from None
    return result


def reset() -> None:
    _persistence.cache_clear()
