"""The bench's cost model: DynamoDB item sizes and request units as AWS documents them."""

from __future__ import annotations

from typing import Any

from bench.meter import Meter, item_size, value_size


def test_item_sizes_count_names_and_values_as_dynamodb_does() -> None:
    assert item_size({"PK": {"S": "AGENT#a1"}}) == 2 + 8
    assert item_size({"name": {"S": "é"}}) == 4 + 2, "UTF-8 bytes, not characters"
    assert value_size({"N": "12345"}) == 4, "about one byte per two significant digits, plus one"
    assert value_size({"N": "-0.00100"}) == 2
    assert value_size({"BOOL": True}) == value_size({"NULL": True}) == 1
    assert value_size({"M": {"a": {"S": "xy"}}}) == 3 + (1 + 2 + 1)
    assert value_size({"L": [{"S": "xy"}, {"N": "1"}]}) == 3 + (2 + 1) + (2 + 1)
    assert value_size({"SS": ["a", "bc"]}) == 3


class FakeTable:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def get_item(self, TableName: str, Key: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's names
        item = self.items.get(Key["PK"]["S"])
        return {"Item": item} if item else {}


class Model:
    def __init__(self, name: str) -> None:
        self.name = name
        self.service_model = type("ServiceModel", (), {"service_name": "dynamodb"})()


def test_writes_bill_per_started_kilobyte_and_transactions_twice() -> None:
    table = FakeTable()
    meter = Meter(table, {"t": ["PK"]}, enabled=True)
    big = {"PK": {"S": "a"}, "blob": {"S": "x" * 1500}}

    meter._before_call(Model("PutItem"), {"body": b'{"TableName": "t", "Item": {"PK": {"S": "a"}}}'})
    table.items["a"] = big
    meter._after_call(Model("PutItem"), {})
    assert meter.write_units == 2, "1.5 KB is two started kilobytes"

    meter.reset()
    body = b'{"TransactItems": [{"Update": {"TableName": "t", "Key": {"PK": {"S": "a"}}}}]}'
    meter._before_call(Model("TransactWriteItems"), {"body": body})
    table.items["a"] = {"PK": {"S": "a"}}
    meter._after_call(Model("TransactWriteItems"), {})
    assert meter.write_units == 4, "the larger of before and after, twice in a transaction"
    assert meter.snapshot()["requests"] == {"dynamodb:TransactWriteItems": 1}


def test_reads_bill_per_started_4_kb_and_half_when_eventually_consistent() -> None:
    meter = Meter(FakeTable(), {}, enabled=True)
    meter._before_call(Model("GetItem"), {"body": b'{"ConsistentRead": true}'})
    meter._after_call(Model("GetItem"), {"Item": {"b": {"S": "x" * 5000}}})
    meter._before_call(Model("Query"), {"body": b"{}"})
    meter._after_call(Model("Query"), {"Items": [{"a": {"S": "x"}}] * 3})
    assert meter.read_units == 2 + 0.5
