"""Count the AWS requests an operation makes, and what DynamoDB bills for them.

moto does not report consumed capacity faithfully, so request units are computed here from the items themselves,
with DynamoDB's published rules: a write is 1 WRU per started KB of the larger of the item before and after it, a
strongly consistent read 1 RRU per started 4 KB (an eventually consistent one half), a Query rounds the total size of
the items it read, and every item of a transaction costs twice. Item sizes follow DynamoDB's sizing rules: names and
UTF-8 values count their bytes, a number about one byte per two digits plus one, a map or list three bytes plus one
per element.

A write also costs each global secondary index it changes, counted apart (`index_write_units`), by the rules of
DynamoDB's GSI.Writes: an item entering the index is one write, leaving it one, changing an index key two (a delete
and a put), changing only projected attributes one, anything else none (a write that sets an index key to the value it
already had, or changes only attributes the index does not project, leaves the entry as it was); each write is 1 WRU
per started KB of the index entry (the table's and the index's keys and the projected attributes, as the template
declares them). Index writes are not doubled for a transaction: DynamoDB propagates a transaction's changes to its
indexes after it commits.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KB = 1024
# What the meter can bill; anything else fails loudly rather than count as free.
METERED = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
        "DescribeTable",
        "CreateTable",
    }
)


def _number_size(digits: str) -> int:
    significant = digits.lstrip("-").replace(".", "").strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    sizes: dict[str, Callable[[], int]] = {
        "S": lambda: len(inner.encode()),
        "N": lambda: _number_size(inner),
        "B": lambda: len(inner),
        "BOOL": lambda: 1,
        "NULL": lambda: 1,
        "SS": lambda: sum(len(item.encode()) for item in inner),
        "NS": lambda: sum(_number_size(item) for item in inner),
        "M": lambda: 3 + sum(len(name.encode()) + value_size(item) + 1 for name, item in inner.items()),
        "L": lambda: 3 + sum(value_size(item) + 1 for item in inner),
        "BS": lambda: sum(len(item) for item in inner),
    }
    return sizes[kind]()


def item_size(item: dict[str, Any] | None) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


@dataclass(frozen=True)
class Index:
    """A global secondary index as the template declares it."""

    name: str
    keys: tuple[str, ...]
    projection: str = "ALL"  # ALL, KEYS_ONLY or INCLUDE
    non_key: tuple[str, ...] = ()

    @classmethod
    def declared(cls, definition: dict[str, Any]) -> Index:
        projection = definition.get("Projection", {})
        return cls(
            name=definition["IndexName"],
            keys=tuple(key["AttributeName"] for key in definition["KeySchema"]),
            projection=projection.get("ProjectionType", "ALL"),
            non_key=tuple(projection.get("NonKeyAttributes", ())),
        )

    def entry(self, item: dict[str, Any] | None, table_keys: list[str]) -> dict[str, Any] | None:
        """The item's entry in this index; None when the item lacks an index key (a sparse index leaves it out)."""
        if not item or any(key not in item for key in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        kept = {*table_keys, *self.keys, *(self.non_key if self.projection == "INCLUDE" else ())}
        return {name: value for name, value in item.items() if name in kept}


def index_write_units(before: dict[str, Any] | None, after: dict[str, Any] | None, keys: tuple[str, ...]) -> int:
    """What one table write costs an index, given the item's index entry before and after it (None: not in it)."""
    if before == after:
        return 0
    if before is None or after is None:
        return _write_units(item_size(after if before is None else before))
    if any(before[key] != after[key] for key in keys):
        return _write_units(item_size(before)) + _write_units(item_size(after))
    return _write_units(item_size(after))


def _write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


@dataclass
class Meter:
    """Install on a boto3 session; `raw` is a client without the meter, used to look at items before and after."""

    raw: Any
    key_names: dict[str, list[str]]
    indexes: dict[str, list[Index]] = field(default_factory=dict)  # each table's global secondary indexes
    requests: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0  # the tables' own; the indexes' are in index_write_units
    index_write_units: Counter[str] = field(default_factory=Counter)
    _before: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    _consistent: bool = False
    thread: int | None = None  # when set, only requests made on this thread count
    where: Callable[[], bool] | None = None  # when set, only requests made while it holds count
    # Off unless an operation is being metered: looking at items before and after a write costs requests of its own.
    enabled: bool = False

    def install(self, session: Any) -> None:
        session.events.register("before-call", self._before_call, unique_id="opscore-bench-before")
        session.events.register("after-call", self._after_call, unique_id="opscore-bench-after")

    def reset(self) -> None:
        self.requests.clear()
        self.index_write_units.clear()
        self.read_units = self.write_units = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "dynamodb_rru": round(self.read_units, 2),
            "dynamodb_wru": round(self.write_units, 2),
            "dynamodb_index_wru": {name: round(units, 2) for name, units in sorted(self.index_write_units.items())},
        }

    # ------------------------------------------------------------------ events
    def counts(self) -> bool:
        return (
            self.enabled
            and (self.thread is None or self.thread == threading.get_ident())
            and (self.where is None or self.where())
        )

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if not self.counts():
            return
        service = model.service_model.service_name
        if service == "lambda":
            return  # the local runtime answers these in-process; invocations are counted by the runtime
        self.requests[f"{service}:{model.name}"] += 1
        if service != "dynamodb":
            return
        body = json.loads(params.get("body") or b"{}")
        self._consistent = bool(body.get("ConsistentRead"))
        self._before = [(table, key, self._item(table, key)) for table, key in self._written_keys(model.name, body)]

    def _after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if not self.counts() or model.service_model.service_name != "dynamodb":
            return
        name = model.name
        if name not in METERED:
            raise NotImplementedError(f"the bench does not know what DynamoDB bills for {name}")
        if name in {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}:
            factor = 2 if name == "TransactWriteItems" else 1
            for table, key, before in self._before:
                after = self._item(table, key)
                self.write_units += factor * _write_units(max(item_size(before), item_size(after)))
                table_keys = self.key_names.get(table, [])
                for index in self.indexes.get(table, []):
                    units = index_write_units(
                        index.entry(before, table_keys), index.entry(after, table_keys), index.keys
                    )
                    if units:
                        self.index_write_units[index.name] += units
            self._before = []
        elif name == "GetItem":
            self.read_units += self._read_units(item_size(parsed.get("Item")), self._consistent)
        elif name == "Query":
            total = sum(item_size(item) for item in parsed.get("Items", []))
            self.read_units += self._read_units(total, self._consistent)
        elif name == "BatchGetItem":  # each item is a read of its own (eventually consistent: Ops-Core asks no more)
            items = [item for found in parsed.get("Responses", {}).values() for item in found]
            self.read_units += sum(self._read_units(item_size(item), consistent=False) for item in items)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _read_units(size: int, consistent: bool) -> float:
        units = max(1, math.ceil(size / (4 * KB)))
        return units if consistent else units / 2

    def _written_keys(self, operation: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if operation == "TransactWriteItems":
            keys = []
            for entry in body.get("TransactItems", []):
                ((_, request),) = entry.items()
                keys.append(
                    (request["TableName"], request.get("Key") or self._key(request["TableName"], request["Item"]))
                )
            return keys
        if operation in {"PutItem"}:
            return [(body["TableName"], self._key(body["TableName"], body["Item"]))]
        if operation in {"UpdateItem", "DeleteItem"}:
            return [(body["TableName"], body["Key"])]
        return []

    def _key(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.key_names[table]}

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.raw.get_item(TableName=table, Key=key).get("Item")
        return item
