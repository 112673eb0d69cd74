"""The one item codec and the one update-expression builder."""

from __future__ import annotations

import pytest

from opscore.aws.items import decode_item, n, s
from opscore.aws.updates import Update


def test_items_decode_to_plain_values() -> None:
    item = {
        "name": s("a"),
        "count": n(3),
        "flag": {"BOOL": True},
        "list": {"L": [s("x"), n(1)]},
        "map": {"M": {"1": s("{}")}},
        "set": {"SS": ["b", "a"]},
        "nothing": {"NULL": True},
    }
    assert decode_item(item) == {
        "name": "a",
        "count": 3,
        "flag": True,
        "list": ["x", 1],
        "map": {"1": "{}"},
        "set": ["a", "b"],
        "nothing": None,
    }
    assert type(decode_item({"count": n(3)})["count"]) is int


def test_an_update_names_every_attribute_and_value_through_placeholders() -> None:
    request = (
        Update({"PK": s("K")})
        .set("status", "queued")
        .set_if_absent("started_at", "t0")
        .increment("generation")
        .set_entry("history", "2", "{}")
        .remove("error", "output")
        .condition("#status = :was AND attribute_exists(#PK)", was="leased")
        .request("table")
    )
    assert request["UpdateExpression"] == (
        "SET #status = :status, #started_at = if_not_exists(#started_at, :started_at), "
        "#generation = if_not_exists(#generation, :generation_start) + :generation_by, #history.#2 = :history_2 "
        "REMOVE #error, #output"
    )
    assert request["ConditionExpression"] == "#status = :was AND attribute_exists(#PK)"
    assert request["ExpressionAttributeNames"] == {
        "#status": "status",
        "#started_at": "started_at",
        "#generation": "generation",
        "#history": "history",
        "#2": "2",
        "#error": "error",
        "#output": "output",
        "#PK": "PK",
    }
    assert request["ExpressionAttributeValues"] == {
        ":status": s("queued"),
        ":started_at": s("t0"),
        ":generation_start": n(0),
        ":generation_by": n(1),
        ":history_2": s("{}"),
        ":was": s("leased"),
    }


def test_values_keep_their_types() -> None:
    request = Update({"PK": s("K")}).set("on", True).set("tags", ["a"]).set("n", 0).request("t")
    assert request["ExpressionAttributeValues"] == {
        ":on": {"BOOL": True},
        ":tags": {"L": [s("a")]},
        ":n": n(0),
    }


def test_one_placeholder_never_stands_for_two_values() -> None:
    with pytest.raises(ValueError, match="another value"):
        Update({"PK": s("K")}).set("status", "queued").condition("#status = :status", status="leased")


def test_numbers_sets_and_unknown_kinds() -> None:
    assert decode_item({"ns": {"NS": ["3", "1"]}}) == {"ns": [1, 3]}
    with pytest.raises(ValueError, match="no B attributes"):
        decode_item({"blob": {"B": b"x"}})


def test_a_value_of_another_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="no attribute value"):
        Update({"PK": s("K")}).set("ratio", 1.5)


def test_a_map_of_whole_numbers_is_stored_as_a_map_and_read_back() -> None:
    request = Update({"PK": s("K")}).set("state_totals", {"idle": 5, "busy": 0}).request("table")
    stored = request["ExpressionAttributeValues"][":state_totals"]
    assert stored == {"M": {"idle": {"N": "5"}, "busy": {"N": "0"}}}
    assert decode_item({"state_totals": stored}) == {"state_totals": {"idle": 5, "busy": 0}}
