"""The one page-token codec, and paging through a partition by sort-key prefix.

A token is where the next page starts (a few string attributes), encoded opaquely; on return each listing says which
positions it accepts, so a token from another listing, another partition or nowhere is a 400 naming next_token.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from opscore.aws.dynamodb import translated_errors
from opscore.aws.items import Item, decode_item, s
from opscore.core.errors import FieldProblem, ValidationFailed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Tokens this code makes are a few hundred characters of unpadded URL-safe base64; anything else was not made here.
MAX_PAGE_TOKEN_LENGTH = 1024
PAGE_TOKEN_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_PAGE_TOKEN_LENGTH}}}")


def not_a_token() -> ValidationFailed:
    return ValidationFailed(
        "next_token is not a token this listing returned",
        [FieldProblem("next_token", "not a valid page token", location="query")],
    )


def encode_page_token(position: Mapping[str, str]) -> str:
    """Where the next page starts, as an opaque URL-safe token."""
    raw = json.dumps(dict(position), sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, accept: Callable[[dict[str, str]], bool]) -> dict[str, str]:
    """Reverse encode_page_token. A token that does not decode, or whose position the listing does not `accept`
    (another partition, another kind of key), is refused as a 400 naming next_token."""
    if not PAGE_TOKEN_PATTERN.fullmatch(token):  # b64decode would skip characters outside the alphabet
        raise not_a_token()
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise not_a_token() from None
    if not _a_position(position) or not accept(position):
        raise not_a_token()
    return position


def _a_position(position: object) -> TypeGuard[dict[str, str]]:
    """A key's attributes, names and values strings DynamoDB can hold (a lone surrogate, `"\\ud800"` in the token's
    JSON, is none: refused before it reaches a Query)."""
    return isinstance(position, dict) and all(
        isinstance(name, str) and isinstance(value, str) and _encodable(name) and _encodable(value)
        for name, value in position.items()
    )


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def query_prefix_page(
    client: DynamoDBClient,
    table: str,
    *,
    partition: str,
    sort_prefix: str,
    limit: int,
    next_token: str | None,
    newest_first: bool = False,
    between: tuple[str, str] | None = None,
) -> tuple[list[Item], str | None]:
    """One page of a partition's items whose sort key starts with `sort_prefix` (and, with `between`, lies between
    `sort_prefix + low` and `sort_prefix + high`, both included), and a token only if more follow."""
    condition = "PK = :pk AND begins_with(SK, :prefix)"
    values = {":pk": s(partition), ":prefix": s(sort_prefix)}
    if between is not None:
        condition = "PK = :pk AND SK BETWEEN :low AND :high"
        values = {":pk": s(partition), ":low": s(sort_prefix + between[0]), ":high": s(sort_prefix + between[1])}
    query: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": not newest_first,
        # One more than asked: DynamoDB hands back a LastEvaluatedKey whenever the limit is reached, even when
        # nothing follows; the extra item tells the two apart.
        "Limit": limit + 1,
    }
    if next_token is not None:
        key = decode_page_token(
            next_token,
            lambda key: set(key) == {"PK", "SK"} and key["PK"] == partition and key["SK"].startswith(sort_prefix),
        )
        query["ExclusiveStartKey"] = {name: s(value) for name, value in key.items()}
    with translated_errors():
        answer = client.query(**query)
    items = answer.get("Items", [])
    page = items[:limit]
    # More follow when the extra item came, or when DynamoDB stopped short at its 1 MB page before it could.
    more = len(items) > limit or (bool(page) and "LastEvaluatedKey" in answer)
    last = decode_item(page[-1]) if more else None
    token = encode_page_token({"PK": last["PK"], "SK": last["SK"]}) if last is not None else None
    return page, token
