"""Body parsing and error mapping shared by every API function."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from opscore.agents.errors import StaleState
from opscore.agents.models import StateReport
from opscore.api.bodies import MAX_BODY_BYTES, read_json
from opscore.api.resolver import error_body, status_for
from opscore.core.errors import (
    Conflict,
    FieldProblem,
    OpsCoreError,
    PayloadTooLarge,
    ServiceUnavailable,
    Throttled,
    UnsupportedMediaType,
    ValidationFailed,
)


def event(
    body: str | None, content_type: str | None = "application/json", encoded: bool = False
) -> APIGatewayProxyEvent:
    headers = {"Content-Type": content_type} if content_type else {}
    raw: dict[str, Any] = {"headers": headers, "body": body, "isBase64Encoded": encoded}
    return APIGatewayProxyEvent(raw)


VALID = '{"state": "idle", "timestamp": "2026-01-01T00:00:00Z"}'


def test_valid_bodies_parse_with_or_without_a_json_content_type() -> None:
    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json", None):
        assert read_json(event(VALID, content_type), StateReport).state == "idle"
    assert read_json(event(base64.b64encode(VALID.encode()).decode(), encoded=True), StateReport).state == "idle"


def test_non_json_content_type_is_415_before_anything_else() -> None:
    with pytest.raises(UnsupportedMediaType):
        read_json(event("x" * (MAX_BODY_BYTES + 1), "text/plain"), StateReport)


def test_size_is_checked_in_bytes() -> None:
    just_over = '{"state": "idle", "timestamp": "2026-01-01T00:00:00Z", "details": {"k": "' + "é" * 33_000 + '"}}'
    assert len(just_over) < MAX_BODY_BYTES < len(just_over.encode())
    with pytest.raises(PayloadTooLarge):
        read_json(event(just_over), StateReport)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (None, [""]),
        ("  ", [""]),
        ("{not json", [""]),
        ('{"state": "idle", "timestamp": "2026-01-01T00:00:00Z", "error": {"type": 1}}', ["error.type"]),
    ],
)
def test_invalid_bodies_name_their_fields(body: str | None, fields: list[str]) -> None:
    with pytest.raises(ValidationFailed) as raised:
        read_json(event(body), StateReport)
    assert [problem.field for problem in raised.value.details] == fields


def test_statuses_follow_the_error_classes() -> None:
    assert status_for(ValidationFailed("x")) == 400
    assert status_for(StaleState("x")) == 409
    assert status_for(Conflict("x")) == 409
    assert status_for(Throttled("x")) == 429
    assert status_for(ServiceUnavailable("x")) == 503
    assert status_for(OpsCoreError("x")) == 500


def test_error_envelope() -> None:
    body = json.loads(error_body("stale_state", "old", "req-1", [FieldProblem("timestamp", "too old", type="stale")]))
    assert body == {
        "error": {
            "code": "stale_state",
            "message": "old",
            "details": [{"field": "timestamp", "in": "body", "message": "too old", "type": "stale"}],
        },
        "request_id": "req-1",
    }
    assert "details" not in json.loads(error_body("not_found", "gone", "req-2"))["error"]
