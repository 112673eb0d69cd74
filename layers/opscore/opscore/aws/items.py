"""The one item codec: DynamoDB's typed attribute values to plain Python values and back.

Stores decode every item they read with `decode_item` and build the typed records the rules work with; nothing outside
a store sees an attribute value. Ops-Core stores whole numbers only, so numbers come back as `int`; string sets come
back as sorted lists. (boto3's TypeDeserializer would do the same with Decimals, but importing it imports all of
boto3, which a handler that has not built a client yet should not pay for at its cold start.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]
Attributes = dict[str, Any]


def decode_item(item: Item) -> Attributes:
    """An item's attributes as plain values: str, int, bool, None, dict, list (sets sorted)."""
    return {name: decode_value(value) for name, value in item.items()}


def decode_value(value: AttributeValueTypeDef | dict[str, Any]) -> Any:
    (kind, raw), *_ = value.items()
    decode = _DECODERS.get(kind)
    if decode is None:
        raise ValueError(f"Ops-Core stores no {kind} attributes")
    return decode(raw)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "S": lambda raw: raw,
    "BOOL": lambda raw: raw,
    "N": int,
    "NULL": lambda _: None,
    "M": lambda raw: {key: decode_value(entry) for key, entry in raw.items()},
    "L": lambda raw: [decode_value(entry) for entry in raw],
    "SS": sorted,
    "NS": lambda raw: sorted(int(entry) for entry in raw),
}


def s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}
