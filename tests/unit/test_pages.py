"""Page tokens (opscore.aws.pages): opaque to clients, and checked when they come back."""

from __future__ import annotations

import base64

import pytest

from opscore.aws.dynamodb import s
from opscore.aws.pages import decode_page_token, encode_page_token
from opscore.core.errors import ValidationFailed


def test_page_tokens_round_trip_and_stay_in_their_partition() -> None:
    key = {"PK": s("AGENT#a1"), "SK": s("STATE#2026-01-01T00:00:00.000000Z")}
    token = encode_page_token(key)
    assert decode_page_token(token, "AGENT#a1", "STATE#") == key
    for bad_partition, bad_prefix in (("AGENT#a2", "STATE#"), ("AGENT#a1", "KEY#")):
        with pytest.raises(ValidationFailed):
            decode_page_token(token, bad_partition, bad_prefix)
    for garbage in (
        "",
        "!!!",
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b'{"PK": 1}').decode(),
    ):
        with pytest.raises(ValidationFailed):
            decode_page_token(garbage, "AGENT#a1", "STATE#")
