"""The one update-expression builder: an UpdateItem's SET and REMOVE clauses with their placeholders.

Every attribute is named through `#name` (so reserved words such as status, state, input, output, error, index need
no care) and every value through `:name`. Conditions are written by hand, as DynamoDB spells them, and refer to
attributes through the same `#name` placeholders; their own values are passed with `condition(...)`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from opscore.aws.items import n, s

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from opscore.aws.items import Item


def value_of(value: str | int | bool | list[str] | dict[str, int]) -> AttributeValueTypeDef:
    if isinstance(value, dict):
        return {"M": {key: n(number) for key, number in value.items()}}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return n(value)
    if isinstance(value, str):
        return s(value)
    if isinstance(value, list):
        return {"L": [s(item) for item in value]}
    raise TypeError(f"no attribute value for {value!r}")


class Update:
    """Build one update: `Update(key).set("status", "queued").add("attempts", 1).remove("ended_at").request(table)`."""

    def __init__(self, key: Item) -> None:
        self._key = key
        self._set: list[str] = []
        self._remove: list[str] = []
        self._names: dict[str, str] = {}
        self._values: dict[str, AttributeValueTypeDef] = {}
        self._condition: str | None = None

    def _name(self, attribute: str) -> str:
        placeholder = "#" + attribute.replace(".", "_")
        self._names[placeholder] = attribute
        return placeholder

    def _value(self, name: str, value: Any) -> str:
        placeholder = ":" + name
        encoded = value_of(value)
        if self._values.get(placeholder, encoded) != encoded:
            raise ValueError(f"{placeholder} already stands for another value")
        self._values[placeholder] = encoded
        return placeholder

    def set(self, attribute: str, value: Any) -> Update:
        self._set.append(f"{self._name(attribute)} = {self._value(attribute, value)}")
        return self

    def set_if_absent(self, attribute: str, value: Any) -> Update:
        """Keep the stored value; write `value` only where the attribute is missing."""
        name = self._name(attribute)
        self._set.append(f"{name} = if_not_exists({name}, {self._value(attribute, value)})")
        return self

    def increment(self, attribute: str, by: int = 1, start: int = 0) -> Update:
        """attribute = (stored value, else `start`) + `by`, in a SET clause (ADD cannot be mixed with a read)."""
        name = self._name(attribute)
        self._set.append(
            f"{name} = if_not_exists({name}, {self._value(f'{attribute}_start', start)}) + "
            f"{self._value(f'{attribute}_by', by)}"
        )
        return self

    def set_entry(self, attribute: str, entry: str, value: Any) -> Update:
        """One entry of a map attribute: attribute.entry = value."""
        placeholder = self._name(attribute) + "." + self._name(entry)
        self._set.append(f"{placeholder} = {self._value(f'{attribute}_{entry}', value)}")
        return self

    def remove(self, *attributes: str) -> Update:
        self._remove.extend(self._name(attribute) for attribute in attributes)
        return self

    def condition(self, expression: str, **values: Any) -> Update:
        """The write's condition, naming attributes as `#attribute` and values as `:name` (given here)."""
        for attribute in _names_in(expression):
            self._name(attribute)
        for name, value in values.items():
            self._value(name, value)
        self._condition = expression
        return self

    def request(self, table: str) -> dict[str, Any]:
        """The UpdateItem request (also the body of a transaction's Update)."""
        clauses = []
        if self._set:
            clauses.append("SET " + ", ".join(self._set))
        if self._remove:
            clauses.append("REMOVE " + ", ".join(self._remove))
        request: dict[str, Any] = {"TableName": table, "Key": self._key, "UpdateExpression": " ".join(clauses)}
        if self._condition is not None:
            request["ConditionExpression"] = self._condition
        if self._names:
            request["ExpressionAttributeNames"] = dict(self._names)
        if self._values:
            request["ExpressionAttributeValues"] = dict(self._values)
        return request


def _names_in(expression: str) -> list[str]:
    return re.findall(r"#([A-Za-z_][A-Za-z0-9_]*)", expression)
