"""What the client retries, how long it waits, and what it never repeats."""

from __future__ import annotations

import httpx
import pytest

from opscore_sdk import Conflict, ConnectionFailed, NotFound, RetryPolicy, ServerError, Throttled, ValidationFailed
from tests.sdk.conftest import Recorder, error_body

HEALTH = {"status": "ok", "version": "0.1.0"}
LEASED = {
    "task_id": "0" * 32 + "-000",
    "session_id": "0" * 32,
    "action": "web.fetch",
    "input": {},
    "session_input": {},
    "priority": 5,
    "attempt": 1,
    "lease_expires_at": "2026-01-01T00:00:00.000000Z",
    "heartbeat_seconds": 30,
    "timeout_seconds": 300,
    "attempt_deadline": "2026-01-01T00:05:00.000000Z",
}


def test_a_5xx_is_retried_with_exponential_backoff_until_it_succeeds() -> None:
    # Given Ops-Core fails three times, then answers
    answers = Recorder(
        (503, error_body("internal_error")),
        (500, error_body("internal_error")),
        (502, b"bad gateway"),
        (200, HEALTH),
    )

    # When a read is made
    with answers.client(max_attempts=4) as client:
        health = client.health()

    # Then it was sent four times, waiting the top of each jitter range: 0.5, 1, 2 seconds
    assert health.status == "ok"
    assert len(answers.requests) == 4
    assert answers.sleeps == [0.5, 1.0, 2.0]


def test_after_max_attempts_the_last_error_is_raised() -> None:
    answers = Recorder((503, error_body("internal_error", "down")))

    with answers.client(max_attempts=3) as client, pytest.raises(ServerError, match="down"):
        client.get_agent("a1")

    assert len(answers.requests) == 3
    assert len(answers.sleeps) == 2


@pytest.mark.parametrize(
    ("status", "code", "kind"), [(400, "validation_error", ValidationFailed), (404, "not_found", NotFound)]
)
def test_other_4xx_are_never_retried(status: int, code: str, kind: type[Exception]) -> None:
    answers = Recorder((status, error_body(code)))

    with answers.client() as client, pytest.raises(kind):
        client.get_agent("a1")

    assert len(answers.requests) == 1
    assert answers.sleeps == []


def test_a_429_waits_what_retry_after_says() -> None:
    answers = Recorder((429, error_body("throttled"), {"Retry-After": "3"}), (200, HEALTH))

    with answers.client() as client:
        client.health()

    assert answers.sleeps == [3.0]


def test_a_429_that_persists_raises_throttled_with_retry_after() -> None:
    answers = Recorder((429, error_body("throttled"), {"Retry-After": "2"}))

    with answers.client(max_attempts=2) as client, pytest.raises(Throttled) as raised:
        client.health()

    assert raised.value.retry_after == 2.0
    assert len(answers.requests) == 2


def test_the_wait_never_exceeds_the_cap_and_jitter_spreads_it_below() -> None:
    policy = RetryPolicy(base=1.0, cap=5.0, random=lambda: 1.0)
    low = RetryPolicy(base=1.0, cap=5.0, random=lambda: 0.25)

    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert [low.delay(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert policy.delay(1, retry_after=60) == 5.0, "Retry-After is capped too"


def test_connection_errors_are_retried_then_raised_as_connection_failed() -> None:
    answers = Recorder(httpx.ConnectError("refused"))

    with answers.client(max_attempts=3) as client, pytest.raises(ConnectionFailed) as raised:
        client.health()

    assert len(answers.requests) == 3
    assert raised.value.status == 0
    assert raised.value.code == "connection_error"


def test_a_read_timeout_of_a_safe_call_is_retried() -> None:
    answers = Recorder(httpx.ReadTimeout("slow"), (200, HEALTH))

    with answers.client() as client:
        assert client.health().status == "ok"

    assert len(answers.requests) == 2


def test_leasing_is_not_repeated_after_a_5xx_or_a_lost_answer_which_could_lease_a_second_task() -> None:
    # Given leasing fails with a 500, or its answer is lost after it was sent
    for failure in [(500, error_body("internal_error")), httpx.ReadTimeout("lost")]:
        answers = Recorder(failure, (200, LEASED))

        # When the agent leases
        with answers.client() as client, pytest.raises((ServerError, ConnectionFailed)):
            client.next_task("a1")

        # Then the request went once: a repeat might lease a second task while the first one's lease runs out
        assert len(answers.requests) == 1


def test_leasing_is_retried_when_nothing_was_sent_or_it_was_throttled() -> None:
    answers = Recorder(httpx.ConnectError("refused"), (429, error_body("throttled")), (200, LEASED))

    with answers.client() as client:
        leased = client.next_task("a1")

    assert leased is not None
    assert leased.attempt == 1
    assert len(answers.requests) == 3


def test_nothing_to_lease_is_none() -> None:
    answers = Recorder((204, None))

    with answers.client() as client:
        assert client.next_task("a1") is None


def test_a_per_call_timeout_replaces_the_client_s() -> None:
    answers = Recorder((200, HEALTH))

    with answers.client() as client:
        client.health(timeout=1.5)
        client.health()

    assert answers.requests[0].extensions["timeout"]["read"] == 1.5
    assert answers.requests[1].extensions["timeout"]["read"] == 30.0


def test_no_retries_policy_sends_once() -> None:
    from opscore_sdk import NO_RETRIES, OpsCore

    answers = Recorder((503, error_body("internal_error")))
    client = OpsCore("http://opscore.test/v1/opscore", "k", retries=NO_RETRIES, transport=httpx.MockTransport(answers))

    with client, pytest.raises(ServerError):
        client.health()

    assert len(answers.requests) == 1


def test_a_trigger_answered_request_in_progress_is_sent_again_with_the_same_key() -> None:
    # Given a retried trigger whose first try Ops-Core is still carrying out
    started = {
        "session_id": "a" * 32,
        "workflow_id": "digest",
        "version": 1,
        "agent_id": "agent-1",
        "status": "waiting",
        "quarantine": None,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "ended_at": None,
    }
    answers = Recorder((409, error_body("request_in_progress", "retry shortly")), (200, started))

    # When it is sent
    with answers.client() as client:
        client.trigger("agent-1", template={"name": "t", "tasks": []})

    # Then it went again after a backoff, under the same Idempotency-Key
    assert len(answers.requests) == 2
    assert answers.sleeps == [0.5]
    keys = {request.headers["Idempotency-Key"] for request in answers.requests}
    assert len(keys) == 1


def test_a_result_answered_conflict_send_it_again_is_sent_again() -> None:
    # Given a result that raced another write to its task
    accepted = {"task_id": LEASED["task_id"], "session_id": LEASED["session_id"], "attempt": 1, "status": "succeeded"}
    answers = Recorder((409, error_body("conflict", "changing too fast; send it again")), (200, accepted))

    # When it is reported
    with answers.client() as client:
        client.succeed("agent-1", LEASED["task_id"], attempt=1)

    # Then it was sent again and taken
    assert len(answers.requests) == 2


def test_other_conflicts_and_unsafe_calls_are_not_sent_again() -> None:
    # Given a result for an attempt that ended, and a lease racing another write
    ended = Recorder((409, error_body("task_not_open")))
    raced = Recorder((409, error_body("conflict")))

    # When they are sent
    with ended.client() as client, pytest.raises(Conflict):
        client.succeed("agent-1", LEASED["task_id"], attempt=1)
    with raced.client() as client, pytest.raises(Conflict):
        client.next_task("agent-1")

    # Then neither went twice
    assert (len(ended.requests), len(raced.requests)) == (1, 1)


@pytest.mark.parametrize(
    ("status", "retry_after", "waited"),
    [
        (503, "3", 3.0),
        (429, "Wed, 01 Jan 2098 00:00:00 GMT", 8.0),  # far ahead: the policy's cap
        (503, "Mon, 01 Jan 2001 00:00:00 GMT", 0.0),  # passed: at once
    ],
)
def test_retry_after_is_honoured_on_503_too_and_as_an_http_date(status: int, retry_after: str, waited: float) -> None:
    # Given Ops-Core (or a proxy) asks to come back later, then answers
    answers = Recorder((status, error_body("x"), {"Retry-After": retry_after}), (200, HEALTH))

    # When a read is made
    with answers.client() as client:
        client.health()

    # Then the client waited what it was told (capped by the policy)
    assert answers.sleeps == [waited]
