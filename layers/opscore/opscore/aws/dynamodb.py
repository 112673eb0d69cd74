"""The DynamoDB client and what its errors mean to Ops-Core: lost conditions, throttling, transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from opscore.core.errors import Throttled

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


THROTTLING_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})


# Why a transaction was cancelled, per item (its CancellationReasons codes).
TRANSACTION_THROTTLED = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"})


TRANSACTION_LOST = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def new_client() -> DynamoDBClient:
    import boto3  # imported on first use, not at module import: handlers that never reach the table stay light

    return boto3.client("dynamodb")


class ConditionFailed(Exception):
    """A conditional write (or a transaction) lost: its condition no longer held when it ran."""


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn the ClientError codes that mean something to Ops-Core into domain errors; re-raise the rest."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            raise ConditionFailed from error
        if code == "TransactionCanceledException":
            reasons = {reason.get("Code", "") for reason in error.response.get("CancellationReasons", [])}
            if reasons & TRANSACTION_THROTTLED:
                raise Throttled("Ops-Core is receiving more requests than it can take; retry shortly") from error
            if reasons & TRANSACTION_LOST:
                raise ConditionFailed from error
        if code in THROTTLING_CODES or code == "TransactionConflictException":
            # A write that met a transaction in progress on the same item: as with throttling, a retry resolves it.
            raise Throttled("Ops-Core is receiving more requests than it can take; retry shortly") from error
        raise


def run_transaction(client: DynamoDBClient, items: list[TransactWriteItemTypeDef]) -> list[str] | None:
    """Run a transaction; None when it succeeded, else each item's cancellation code when a condition failed.

    A concurrent transaction on the same items (TransactionConflict) counts as throttling: the caller's retry
    resolves it.
    """
    try:
        client.transact_write_items(TransactItems=items)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        reasons = [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]
        if code in THROTTLING_CODES or set(reasons) & (TRANSACTION_THROTTLED | {"TransactionConflict"}):
            raise Throttled("Ops-Core is receiving more requests than it can take; retry shortly") from error
        if code == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons:
            return reasons
        raise
    return None


def update_if(client: DynamoDBClient, request: dict[str, Any]) -> bool:
    """A conditional UpdateItem; False when its condition did not hold (then it changed nothing)."""
    try:
        with translated_errors():
            client.update_item(**request)
    except ConditionFailed:
        return False
    return True
