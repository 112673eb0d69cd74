"""Error answers become typed exceptions carrying the envelope: code, message, details, request_id and status."""

from __future__ import annotations

import pydantic
import pytest

from opscore_sdk import (
    Conflict,
    Forbidden,
    NotFound,
    OpsCoreError,
    Quarantined,
    ServerError,
    StaleState,
    Throttled,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
)
from opscore_sdk.models import RegistrationRequest
from tests.sdk.conftest import Recorder, RecorderFactory, error_body
from tests.sdk.fake_opscore import leased

QUARANTINE = {
    "since": "2026-01-01T00:00:00.000000Z",
    "reason": "failures",
    "failures": 3,
    "window_seconds": 600,
    "last_error_type": "OpsCore.LeaseExpired",
    "probe_after": "2026-01-01T00:05:00.000000Z",
    "half_open": False,
    "probe_task_id": None,
}


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "validation_error", ValidationFailed),
        (400, "bad_request", ValidationFailed),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Forbidden),
        (404, "not_found", NotFound),
        (409, "stale_state", StaleState),
        (409, "session_ended", Conflict),
        (409, "task_not_open", Conflict),
        (409, "idempotency_key_reused", Conflict),
        (413, "payload_too_large", OpsCoreError),
        (415, "unsupported_media_type", OpsCoreError),
        (429, "throttled", Throttled),
        (500, "internal_error", ServerError),
    ],
)
def test_each_error_answer_raises_its_own_exception_with_the_envelope(
    answers: RecorderFactory, status: int, code: str, kind: type[OpsCoreError]
) -> None:
    # Given Ops-Core answers an error
    # When a call gets it
    with (
        answers((status, error_body(code, "the reason"))).client(max_attempts=1) as client,
        pytest.raises(kind) as raised,
    ):
        client.get_agent("a1")

    # Then the exception is of its kind, and carries what the answer said
    error = raised.value
    assert type(error) is kind
    assert (error.status, error.code, error.message, error.request_id) == (status, code, "the reason", "req-123")


def test_a_validation_error_names_each_field() -> None:
    details = [
        {"field": "capabilities.0", "in": "body", "message": "must match the pattern", "type": "string_pattern"},
        {"field": "limit", "in": "query", "message": "at most 100", "type": "less_than_equal"},
    ]
    with (
        Recorder((400, error_body("validation_error", details=details))).client() as client,
        pytest.raises(ValidationFailed) as raised,
    ):
        client.register("a1", {"name": "x", "capabilities": ["bad one"]})

    assert raised.value.fields == {"capabilities.0": "must match the pattern", "limit": "at most 100"}
    assert raised.value.details[0].location == "body"
    assert raised.value.details[1].type == "less_than_equal"


def test_a_quarantined_agent_s_pull_raises_quarantined_with_retry_after_and_the_quarantine(
    answers: RecorderFactory,
) -> None:
    body = error_body("agent_quarantined", "agent a1 is quarantined", quarantine=QUARANTINE)
    with answers((409, body, {"Retry-After": "42"})).client() as client, pytest.raises(Quarantined) as raised:
        client.next_task("a1")

    assert isinstance(raised.value, Conflict), "a quarantine is a conflict too"
    assert raised.value.retry_after == 42.0
    quarantine = raised.value.quarantine
    assert quarantine is not None
    assert quarantine.model_dump() == QUARANTINE


def test_an_answer_that_is_not_ops_core_s_envelope_still_raises_by_status(answers: RecorderFactory) -> None:
    # Given a proxy in front of Ops-Core answers 502 with an HTML page
    with (
        answers((502, b"<html>bad gateway</html>")).client(max_attempts=1) as client,
        pytest.raises(ServerError) as raised,
    ):
        client.health()

    assert (raised.value.status, raised.value.code) == (502, "http_502")
    assert "bad gateway" in raised.value.message
    assert raised.value.request_id is None


def test_an_answer_with_a_field_this_sdk_does_not_know_is_read_and_the_field_ignored(answers: RecorderFactory) -> None:
    # Given a newer Ops-Core that adds a field to a leased task (and to the agent inside a page)
    with answers((200, {**leased(1), "trace_id": "abc"})).client(max_attempts=1) as client:
        # When the agent leases it
        task = client.next_task("agent-1")

    # Then the task is read as usual
    assert task is not None
    assert task.task_id == leased(1)["task_id"]
    assert not hasattr(task, "trace_id")


def test_a_request_body_model_still_refuses_a_misspelt_field() -> None:
    # Given a request body no answer carries
    # When it is built with a field the API does not take
    # Then it fails before anything is sent
    with pytest.raises(pydantic.ValidationError):
        RegistrationRequest.model_validate({"name": "a1", "capabilities": ["x"], "max_concurency": 2})


def test_a_successful_answer_that_does_not_fit_its_model_raises_unexpected_response(answers: RecorderFactory) -> None:
    # Given Ops-Core answers 200 with a leased task missing its id
    body = {name: value for name, value in leased(1).items() if name != "task_id"}
    with answers((200, body)).client(max_attempts=1) as client, pytest.raises(UnexpectedResponse) as raised:
        # When the agent leases it
        client.next_task("agent-1")

    # Then the error is the SDK's own, with the status and the body
    assert isinstance(raised.value, OpsCoreError)
    assert raised.value.status == 200
    assert raised.value.code == "unexpected_response"
    assert "task_id" in str(raised.value)
