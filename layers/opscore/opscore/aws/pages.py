"""Page tokens of the listings that page a table partition: opaque to clients, checked on return."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from opscore.aws.dynamodb import Item, s, translated_errors
from opscore.core.errors import FieldProblem, ValidationFailed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Tokens this code makes are a few hundred characters; anything much longer was not made here.
MAX_PAGE_TOKEN_LENGTH = 1024


def encode_page_token(last_key: Item) -> str:
    raw = json.dumps({name: value["S"] for name, value in last_key.items() if "S" in value}, sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, partition: str, sort_prefix: str) -> Item:
    """Reverse encode_page_token, refusing tokens that point outside the partition being listed."""
    problem = ValidationFailed(
        "next_token is not a token this listing returned",
        [FieldProblem("next_token", "not a valid page token", location="query")],
    )
    if len(token) > MAX_PAGE_TOKEN_LENGTH:
        raise problem
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise problem from None
    if (
        not isinstance(key, dict)
        or set(key) != {"PK", "SK"}
        or key["PK"] != partition
        or not isinstance(key["SK"], str)
        or not key["SK"].startswith(sort_prefix)
    ):
        raise problem
    return {"PK": s(key["PK"]), "SK": s(key["SK"])}


def query_prefix_page(
    client: DynamoDBClient,
    table: str,
    *,
    partition: str,
    sort_prefix: str,
    limit: int,
    next_token: str | None,
    newest_first: bool = False,
) -> tuple[list[Item], str | None]:
    """One page of a partition's items whose sort key starts with `sort_prefix`, and a token only if more follow."""
    query: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
        "ExpressionAttributeValues": {":pk": s(partition), ":prefix": s(sort_prefix)},
        "ScanIndexForward": not newest_first,
        # One more than asked: DynamoDB hands back a LastEvaluatedKey whenever the limit is reached, even when
        # nothing follows; the extra item tells the two apart.
        "Limit": limit + 1,
    }
    if next_token is not None:
        query["ExclusiveStartKey"] = decode_page_token(next_token, partition, sort_prefix)
    with translated_errors():
        items = client.query(**query).get("Items", [])
    page = items[:limit]
    token = encode_page_token({"PK": page[-1]["PK"], "SK": page[-1]["SK"]}) if len(items) > limit else None
    return page, token
