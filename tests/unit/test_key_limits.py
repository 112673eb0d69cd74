"""The local runtime's per-key limit (a token bucket per key, as the usage plan throttles each key in AWS), and the
CLI's expiry options."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opscore_tools.keys_cli import UsageError, expiry
from opscore_tools.local.gateway import KeyThrottle
from opscore_tools.local.template import Throttle, load_template
from tests.conftest import TEMPLATE_PATH


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_burst_then_is_held_to_its_rate_while_other_keys_pass() -> None:
    clock = Clock()
    throttle = KeyThrottle(Throttle(rate=2, burst=3), clock)
    assert [throttle.take("a") for _ in range(3)] == [None, None, None]
    assert throttle.take("a") == pytest.approx(0.5), "the next token comes in half a second"
    assert throttle.take("b") is None, "another key has a bucket of its own"
    clock.now += 0.5
    assert throttle.take("a") is None
    assert throttle.take("a") is not None
    clock.now += 60
    assert [throttle.take("a") for _ in range(4)][:3] == [None, None, None], "refilled up to the burst, no more"


def test_the_local_limit_is_the_templates_usage_plan() -> None:
    template = load_template(TEMPLATE_PATH)
    assert template.per_key_throttle == Throttle(rate=50.0, burst=100)


def test_expiry_options() -> None:
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert expiry("2027-01-01T00:00:00Z", None, now) == "2027-01-01T00:00:00Z"
    assert expiry(None, "30d", now) == "2026-12-31T08:00:00Z"
    assert expiry(None, "90s", now) == "2026-12-01T08:01:30Z"
    assert expiry(None, None, now) is None
    for at, within in (("2027-01-01T00:00:00Z", "1d"), (None, "1w"), (None, "0d"), (None, "-1d")):
        with pytest.raises(UsageError):
            expiry(at, within, now)
