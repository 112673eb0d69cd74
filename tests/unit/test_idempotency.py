"""The Idempotency-Key header (opscore.api.idempotency): which keys a client may send."""

from __future__ import annotations

import pytest

from opscore.api.idempotency import checked_key
from opscore.core.errors import ValidationFailed


def test_idempotency_keys_are_printable_ascii_without_spaces() -> None:
    assert checked_key(None) is None
    assert checked_key("order-42/retry:1") == "order-42/retry:1"
    for bad in ("", "has space", "é", "x" * 256):
        with pytest.raises(ValidationFailed) as refused:
            checked_key(bad)
        assert refused.value.details[0].field == "Idempotency-Key"
        assert refused.value.details[0].location == "header"
