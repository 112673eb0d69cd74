"""The one item codec: DynamoDB's typed attribute values to plain Python values and back.

Stores decode every item they read with `decode_item` (boto3's TypeDeserializer) and build the typed records the
rules work with; nothing outside a store sees an attribute value. Ops-Core stores whole numbers only, so numbers come
back as `int`; string sets come back as sorted lists.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]
Attributes = dict[str, Any]

_DESERIALIZER = TypeDeserializer()


def decode_item(item: Item) -> Attributes:
    """An item's attributes as plain values: str, int, bool, None, dict, list (sets sorted)."""
    return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    return value


def s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}
