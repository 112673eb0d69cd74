"""Request contracts and the normalisations the stale-update rule depends on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from opscore.agents.models import RegistrationRequest, StateReport, endpoint_problem
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.keys.models import KeyRequest, Principal, Role


def test_format_timestamp_orders_as_time_across_zones_and_precisions() -> None:
    base = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    moments = [
        base,
        (base + timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-8))),
        (base + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=5, minutes=30))),
        base + timedelta(days=400),
    ]
    formatted = [format_timestamp(moment) for moment in moments]
    assert formatted == sorted(formatted)
    assert formatted[0] == "2026-03-01T12:00:00.000000Z"
    assert format_timestamp(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000000Z", "fixed width"
    assert all(len(text) == len(formatted[0]) for text in formatted)


def test_canonical_json_ignores_key_order_only() -> None:
    assert canonical_json({"b": 1, "a": [1, {"y": 2, "x": 1}]}) == canonical_json({"a": [1, {"x": 1, "y": 2}], "b": 1})
    assert canonical_json({"a": [1, 2]}) != canonical_json({"a": [2, 1]})
    assert canonical_json(None) == "null"


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-24T10:00:00Z",
        "2026-11-24t10:00:00.5z",
        "2026-11-24T10:00:00.123456789+05:30",
        "2026-11-24T10:00:00-00:00",
    ],
)
def test_rfc3339_timestamps_are_accepted(timestamp: str) -> None:
    report = StateReport.model_validate_json(f'{{"state": "idle", "timestamp": "{timestamp}"}}')
    assert report.timestamp.tzinfo is not None


@pytest.mark.parametrize(
    "timestamp",
    [
        '"2026-11-24T10:00:00"',
        '"2026-11-24 10:00:00Z"',
        '"2026-11-24"',
        '"1767225600"',
        "1767225600",
        '"2026-02-30T00:00:00Z"',
    ],
)
def test_other_timestamps_are_refused(timestamp: str) -> None:
    with pytest.raises(ValidationError) as raised:
        StateReport.model_validate_json(f'{{"state": "idle", "timestamp": {timestamp}}}')
    assert [error["loc"] for error in raised.value.errors()] == [("timestamp",)]


def test_registration_defaults() -> None:
    request = RegistrationRequest.model_validate_json('{"name": "n"}')
    assert (request.max_concurrency, request.capabilities, request.metadata, request.endpoint) == (1, [], {}, None)


HTTPS_ONLY = "endpoint must use https; plain http is allowed only for loopback hosts"
NOT_ABSOLUTE = "endpoint must be an absolute https URL"
CREDENTIALS = "endpoint must not carry credentials; webhook deliveries are signed instead"
UNPRINTABLE = "endpoint must not contain spaces or control characters"

# Each endpoint, and the rule it breaks (None: a valid endpoint).
ENDPOINTS: list[tuple[str, str | None]] = [
    ("https://agent.example.com/hook", None),
    ("https://agent.example.com:8443/hook?x=1", None),
    ("https://10.0.0.1/", None),  # a private address is the webhook channel's concern, at delivery time
    ("http://127.0.0.2:9000/", None),
    ("http://localhost/", None),
    ("http://LOCALHOST/", None),
    ("http://[::1]:8080/", None),
    ("http://agent.example.com/", HTTPS_ONLY),
    ("http://10.0.0.1/", HTTPS_ONLY),
    ("http://localhost.example.com/", HTTPS_ONLY),
    ("https://", NOT_ABSOLUTE),
    ("agent.example.com", NOT_ABSOLUTE),
    ("/tasks", NOT_ABSOLUTE),
    ("ftp://agent.example.com/", NOT_ABSOLUTE),
    ("HTTPS://agent.example.com/", None),
    ("https://user:pass@agent.example.com/", CREDENTIALS),
    ("https://user@agent.example.com/", CREDENTIALS),
    ("https://:pass@agent.example.com/", CREDENTIALS),
    ("http://user@localhost/", CREDENTIALS),
    ("https://agent.example.com/a b", UNPRINTABLE),
    ("https://agent.example.com/\t", UNPRINTABLE),
    ("https://agent.example.com/\u200b", UNPRINTABLE),
    (" https://agent.example.com/", UNPRINTABLE),
]


@pytest.mark.parametrize(("endpoint", "problem"), ENDPOINTS)
def test_endpoint_problem(endpoint: str, problem: str | None) -> None:
    assert endpoint_problem(endpoint) == problem


@pytest.mark.parametrize(("endpoint", "problem"), ENDPOINTS)
def test_endpoint_rules(endpoint: str, problem: str | None) -> None:
    if problem is None:
        assert RegistrationRequest(name="n", endpoint=endpoint).endpoint == endpoint
    else:
        with pytest.raises(ValidationError) as error:
            RegistrationRequest(name="n", endpoint=endpoint)
        assert [(e["loc"], e["msg"]) for e in error.value.errors()] == [(("endpoint",), f"Value error, {problem}")]


def test_an_endpoint_urlsplit_cannot_read_is_refused_and_an_absent_one_is_allowed_but_not_null() -> None:
    with pytest.raises(ValidationError, match="Invalid IPv6 URL"):
        RegistrationRequest(name="n", endpoint="https://[::1/")
    assert RegistrationRequest(name="n").endpoint is None
    with pytest.raises(ValidationError, match="endpoint may be left out, but not null"):
        RegistrationRequest(name="n", endpoint=None)


def test_key_request_roles() -> None:
    assert KeyRequest.model_validate_json('{"role": "admin"}').effective_role is Role.ADMIN
    assert KeyRequest.model_validate_json('{"agent_id": "a"}').effective_role is Role.AGENT
    assert KeyRequest.model_validate_json('{"role": "agent", "agent_id": "a"}').effective_role is Role.AGENT
    for body in ("{}", '{"role": "agent"}', '{"role": "admin", "agent_id": "a"}'):
        with pytest.raises(ValidationError):
            KeyRequest.model_validate_json(body)


def test_principal_access() -> None:
    admin = Principal(key_id="k", role=Role.ADMIN)
    agent = Principal(key_id="k", role=Role.AGENT, agent_id="a1")
    assert admin.may_act_for("anyone")
    assert agent.may_act_for("a1")
    assert not agent.may_act_for("a10")
