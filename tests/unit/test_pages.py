"""Page tokens (opscore.aws.pages): opaque to clients, and checked when they come back."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opscore.aws.pages import decode_page_token, encode_page_token, query_prefix_page
from opscore.core.errors import ValidationFailed


def within(partition: str, prefix: str) -> Callable[[dict[str, str]], bool]:
    """What a listing of `partition`'s items under `prefix` accepts as a position (see query_prefix_page)."""
    return lambda key: set(key) == {"PK", "SK"} and key["PK"] == partition and key["SK"].startswith(prefix)


def test_page_tokens_round_trip_and_stay_in_their_partition() -> None:
    key = {"PK": "AGENT#a1", "SK": "STATE#2026-01-01T00:00:00.000000Z"}
    token = encode_page_token(key)
    assert decode_page_token(token, within("AGENT#a1", "STATE#")) == key
    for bad_partition, bad_prefix in (("AGENT#a2", "STATE#"), ("AGENT#a1", "KEY#")):
        with pytest.raises(ValidationFailed):
            decode_page_token(token, within(bad_partition, bad_prefix))
    for garbage in (
        "",
        "!!!",
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b'{"PK": 1}').decode(),
    ):
        with pytest.raises(ValidationFailed):
            decode_page_token(garbage, within("AGENT#a1", "STATE#"))


# What a client could send back instead of a token it was given: the token of a key elsewhere, a token with one
# character changed, anything, base64 of anything, or JSON that looks like a key. (The listings' own tokens are
# fuzzed through their handlers in the integration tier.)
PARTITION, PREFIX = "AGENT#a1", "STATE#"
KEY_VALUES = st.sampled_from([PARTITION, "AGENT#a2", "AGENT#a", "STATE#1", "KEY#1", ""]) | st.text(max_size=20)
SORT_KEYS = KEY_VALUES | st.text(max_size=20).map(lambda rest: PREFIX + rest)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@st.composite
def changed_tokens(draw: st.DrawFn) -> str:
    token = encode_page_token({"PK": PARTITION, "SK": PREFIX + draw(st.text(max_size=20))})
    at = draw(st.integers(0, len(token) - 1))
    return token[:at] + draw(st.characters(codec="ascii")) + token[at + 1 :]


TOKENS = st.one_of(
    st.builds(lambda pk, sk: encode_page_token({"PK": pk, "SK": sk}), KEY_VALUES, SORT_KEYS),
    changed_tokens(),
    st.text(max_size=80),
    st.binary(max_size=80).map(b64),
    st.fixed_dictionaries(
        {"PK": st.just(PARTITION) | KEY_VALUES, "SK": SORT_KEYS | st.integers() | st.none() | st.lists(KEY_VALUES)},
        optional={"extra": st.text(max_size=5)},
    ).map(lambda value: b64(json.dumps(value).encode())),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    ).map(lambda value: b64(json.dumps(value).encode())),
    st.integers(1100, 3000).map(lambda length: "A" * length),
)


@given(suffix=st.text(max_size=60), partition=st.text(max_size=60))
def test_any_key_of_the_partition_round_trips(suffix: str, partition: str) -> None:
    key = {"PK": partition, "SK": PREFIX + suffix}
    assert decode_page_token(encode_page_token(key), within(partition, PREFIX)) == key


def decoded(token: str) -> dict[str, str] | ValidationFailed:
    try:
        return decode_page_token(token, within(PARTITION, PREFIX))
    except ValidationFailed as refused:
        return refused


@given(token=TOKENS)
def test_any_other_token_is_refused_naming_next_token_or_stays_in_the_partition(token: str) -> None:
    outcome = decoded(token)  # any other exception fails the test
    if isinstance(outcome, ValidationFailed):
        assert [(problem.field, problem.location) for problem in outcome.details] == [("next_token", "query")]
    else:
        assert outcome["PK"] == PARTITION
        assert outcome["SK"].startswith(PREFIX)


class _OneMegabyteQuery:
    """A Query that stops at DynamoDB's 1 MB page: two items of the three asked for, and where it stopped."""

    def query(self, **request: Any) -> dict[str, Any]:
        items = [{"PK": {"S": "AGENT#a"}, "SK": {"S": f"STATE#{n}"}} for n in (1, 2)]
        return {"Items": items, "LastEvaluatedKey": items[-1]}


def test_a_page_cut_short_by_the_1_mb_limit_still_says_more_follow() -> None:
    page, token = query_prefix_page(
        cast("Any", _OneMegabyteQuery()), "t", partition="AGENT#a", sort_prefix="STATE#", limit=2, next_token=None
    )
    assert len(page) == 2
    assert token is not None
    assert decode_page_token(token, within("AGENT#a", "STATE#")) == {"PK": "AGENT#a", "SK": "STATE#2"}
