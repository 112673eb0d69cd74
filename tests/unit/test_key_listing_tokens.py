"""GET /keys's page tokens on the key store: whatever token a client sends, no Query goes to DynamoDB with a range
it would refuse (a BETWEEN whose lower bound is above its upper bound is a ValidationException there, where moto
answers an empty page)."""

from __future__ import annotations

from typing import Any

import pytest

from opscore.aws.pages import encode_page_token
from opscore.core.errors import ValidationFailed
from opscore.keys.store import KeyStore


class RecordingClient:
    """Records each Query and answers it with no items, as DynamoDB would answer a valid one on an empty index."""

    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []

    def query(self, **request: Any) -> dict[str, Any]:
        self.queries.append(request)
        return {"Items": []}


POSITIONS = ["~~", "~", "}", "~ ", "", " ", "admin", "admin#~", "agent#a#~~", "agent#a#~", "agent#a#", "agent#b#x", "{"]


@pytest.mark.parametrize("agent_id", [None, "a"])
@pytest.mark.parametrize("position", POSITIONS)
def test_no_token_makes_a_query_whose_range_is_upside_down(agent_id: str | None, position: str) -> None:
    client = RecordingClient()
    store = KeyStore(client, "table")  # type: ignore[arg-type]
    refused: list[str] = []
    try:
        store.list_page(agent_id, 10, encode_page_token({"keys_sk": position}))
    except ValidationFailed as error:
        refused = [problem.field for problem in error.details]
    if refused:
        assert refused == ["next_token"]
        assert client.queries == [], "a refused token sends nothing"
        return
    (query,) = client.queries
    values = query["ExpressionAttributeValues"]
    assert values[":low"]["S"] <= values[":high"]["S"], (position, values)


@pytest.mark.parametrize(("agent_id", "position"), [(None, "~~"), (None, "~"), ("a", "agent#a#~~"), ("a", "agent#b#x")])
def test_a_position_outside_the_listing_is_a_400_naming_next_token(agent_id: str | None, position: str) -> None:
    client = RecordingClient()
    with pytest.raises(ValidationFailed) as refused:
        KeyStore(client, "table").list_page(agent_id, 10, encode_page_token({"keys_sk": position}))  # type: ignore[arg-type]
    assert refused.value.details[0].field == "next_token"
    assert client.queries == []


def test_a_token_the_listing_made_is_accepted() -> None:
    client = RecordingClient()
    KeyStore(client, "table").list_page("a", 10, encode_page_token({"keys_sk": "agent#a#2026-01-01T00:00:00Z#0123"}))  # type: ignore[arg-type]
    assert client.queries[0]["ExpressionAttributeValues"][":low"]["S"] == "agent#a#2026-01-01T00:00:00Z#0123 "
