"""Count the AWS requests an operation makes, and what DynamoDB bills for them.

moto does not report consumed capacity faithfully, so request units are computed here from the items themselves,
with DynamoDB's published rules: a write is 1 WRU per started KB of the larger of the item before and after it, a
strongly consistent read 1 RRU per started 4 KB (an eventually consistent one half), a Query rounds the total size of
the items it read, and every item of a transaction costs twice. Item sizes follow DynamoDB's sizing rules: names and
UTF-8 values count their bytes, a number about one byte per two digits plus one, a map or list three bytes plus one
per element.
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
    {"GetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "DescribeTable", "CreateTable"}
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


@dataclass
class Meter:
    """Install on a boto3 session; `raw` is a client without the meter, used to look at items before and after."""

    raw: Any
    key_names: dict[str, list[str]]
    requests: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0
    _before: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    _consistent: bool = False
    thread: int | None = None  # when set, only requests made on this thread count
    # Off unless an operation is being metered: looking at items before and after a write costs requests of its own.
    enabled: bool = False

    def install(self, session: Any) -> None:
        session.events.register("before-call", self._before_call, unique_id="opscore-bench-before")
        session.events.register("after-call", self._after_call, unique_id="opscore-bench-after")

    def reset(self) -> None:
        self.requests.clear()
        self.read_units = self.write_units = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "dynamodb_rru": round(self.read_units, 2),
            "dynamodb_wru": round(self.write_units, 2),
        }

    # ------------------------------------------------------------------ events
    def counts(self) -> bool:
        return self.enabled and (self.thread is None or self.thread == threading.get_ident())

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
        self._before = [(table, key, self._size(table, key)) for table, key in self._written_keys(model.name, body)]

    def _after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if not self.counts() or model.service_model.service_name != "dynamodb":
            return
        name = model.name
        if name not in METERED:
            raise NotImplementedError(f"the bench does not know what DynamoDB bills for {name}")
        if name in {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}:
            factor = 2 if name == "TransactWriteItems" else 1
            for table, key, before in self._before:
                after = self._size(table, key)
                self.write_units += factor * max(1, math.ceil(max(before, after) / KB))
            self._before = []
        elif name == "GetItem":
            self.read_units += self._read_units(item_size(parsed.get("Item")), self._consistent)
        elif name == "Query":
            total = sum(item_size(item) for item in parsed.get("Items", []))
            self.read_units += self._read_units(total, self._consistent)

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

    def _size(self, table: str, key: dict[str, Any]) -> int:
        return item_size(self.raw.get_item(TableName=table, Key=key).get("Item"))
