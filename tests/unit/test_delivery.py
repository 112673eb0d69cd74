"""Delivery channels: the registry of channels, and the webhook's signing, answers and retries."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from opscore.agents.models import RegistrationRequest
from opscore.dispatch.delivery import CHANNELS, Target, channel
from opscore.dispatch.delivery.webhook import (
    PRIVATE_ENDPOINTS_VARIABLE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Answer,
    WebhookChannel,
    answer_meaning,
    private_endpoints_allowed,
    sign,
    verify_signature,
)
from opscore.dispatch.models import LeasedTask

TASK = LeasedTask(
    task_id="0644e2a7c1d3f5b0e3c1a9f4d2b7e8c6-000",
    session_id="0644e2a7c1d3f5b0e3c1a9f4d2b7e8c6",
    action="web.fetch",
    input={"url": "https://example.com"},
    session_input={},
    priority=5,
    attempt=1,
    lease_expires_at="2026-11-24T10:05:00.000000Z",
    heartbeat_seconds=None,
    timeout_seconds=300,
    attempt_deadline="2026-11-24T10:05:00.000000Z",
)
TARGET = Target(agent_id="agent-1", endpoint="https://agent.example.com/tasks", secret="s3cret-s3cret-s3cret")
NOW = 1_795_500_000.0


class Endpoint:
    """A stand-in for the agent's endpoint: answers from a script, remembers every request."""

    def __init__(self, *answers: tuple[int, bytes] | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        self.requests.append((url, body, headers))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def webhook(endpoint: Endpoint, sleeps: list[float] | None = None, public: bool = True) -> WebhookChannel:
    return WebhookChannel(
        post=endpoint,
        sleep=(sleeps if sleeps is not None else []).append,
        clock=lambda: NOW,
        public=lambda _: public,
    )


def test_every_registered_channel_loads_and_poll_pushes_nothing() -> None:
    assert set(CHANNELS) == {"poll", "webhook"}
    assert channel("poll").pushes is False
    assert channel("webhook").pushes is True
    with pytest.raises(LookupError):
        channel("carrier-pigeon")


def test_a_webhook_registration_needs_an_endpoint_and_a_secret() -> None:
    problems = channel("webhook").check(RegistrationRequest(name="bot", delivery="webhook"))
    assert [problem.field for problem in problems] == ["endpoint", "webhook_secret"]
    complete = RegistrationRequest(
        name="bot", delivery="webhook", endpoint="https://agent.example.com/tasks", webhook_secret="x" * 16
    )
    assert channel("webhook").check(complete) == []


def test_the_task_is_posted_signed_over_the_timestamp_and_body() -> None:
    endpoint = Endpoint((202, b""))
    assert webhook(endpoint).deliver(TARGET, TASK).outcome == "accepted"
    ((url, body, headers),) = endpoint.requests
    assert url == TARGET.endpoint
    assert json.loads(body) == TASK.model_dump(mode="json")
    assert headers[TIMESTAMP_HEADER] == str(int(NOW))
    assert verify_signature(TARGET.secret or "", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=NOW)
    assert not verify_signature("another-secret-value", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify_signature(TARGET.secret or "", headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER])
    stale = NOW + 301
    assert not verify_signature(
        TARGET.secret or "", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=stale
    ), "an old signature is refused: no replays"
    # The documented recipe, as any receiver would compute it: HMAC-SHA256 over "<timestamp>.<body>".
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", b"{}") == f"sha256={expected}"


def test_a_200_with_a_result_completes_the_task_and_anything_else_fails_it() -> None:
    answer = json.dumps({"status": "succeeded", "output": {"page": "<html>"}}).encode()
    delivered = webhook(Endpoint((200, answer))).deliver(TARGET, TASK)
    assert (delivered.outcome, delivered.result and delivered.result.output) == ("completed", {"page": "<html>"})

    delivered = webhook(Endpoint((200, b'{"status": "done"}'))).deliver(TARGET, TASK)
    assert delivered.outcome == "failed"
    assert "without a valid task result" in delivered.reason
    assert "status" in delivered.reason


def test_server_errors_and_network_failures_are_retried_then_fail_the_attempt() -> None:
    sleeps: list[float] = []
    endpoint = Endpoint(ConnectionRefusedError("refused"), (503, b""), (202, b""))
    assert webhook(endpoint, sleeps).deliver(TARGET, TASK).outcome == "accepted"
    assert (len(endpoint.requests), sleeps) == (3, [0.25, 0.5])

    endpoint = Endpoint((500, b""), (502, b""), (429, b""))
    delivered = webhook(endpoint).deliver(TARGET, TASK)
    assert (delivered.outcome, delivered.reason, len(endpoint.requests)) == ("failed", "the endpoint answered 429", 3)


def test_a_client_error_is_not_retried() -> None:
    endpoint = Endpoint((404, b"no such route"))
    delivered = webhook(endpoint).deliver(TARGET, TASK)
    assert (delivered.outcome, delivered.reason, len(endpoint.requests)) == ("failed", "the endpoint answered 404", 1)


def test_an_endpoint_that_resolves_to_a_private_address_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSCORE_WEBHOOK_PRIVATE_ENDPOINTS", raising=False)
    endpoint = Endpoint((202, b""))
    delivered = webhook(endpoint, public=False).deliver(TARGET, TASK)
    assert (delivered.outcome, endpoint.requests) == ("failed", [])
    assert "private address" in delivered.reason
    monkeypatch.setenv("OPSCORE_WEBHOOK_PRIVATE_ENDPOINTS", "allow")  # the local runtime's setting
    assert webhook(endpoint, public=False).deliver(TARGET, TASK).outcome == "accepted"


def test_a_redirect_or_a_broken_answer_is_not_followed_nor_fatal() -> None:
    assert webhook(Endpoint((302, b""))).deliver(TARGET, TASK).reason == "the endpoint answered 302"
    broken = Endpoint(ValueError("not HTTP"), ValueError("not HTTP"), ValueError("not HTTP"))
    delivered = webhook(broken).deliver(TARGET, TASK)
    assert (delivered.outcome, len(broken.requests)) == ("failed", 3)
    assert "ValueError" in delivered.reason


# What each HTTP answer means: the table the channel's retries follow.
ANSWERS: list[tuple[int, Answer]] = [
    (200, "completed"),
    (202, "accepted"),
    (201, "give up"),
    (204, "give up"),
    (301, "give up"),
    (302, "give up"),
    (307, "give up"),
    (400, "give up"),
    (401, "give up"),
    (403, "give up"),
    (404, "give up"),
    (409, "give up"),
    (408, "retry"),
    (429, "retry"),
    (500, "retry"),
    (502, "retry"),
    (503, "retry"),
    (504, "retry"),
]


@pytest.mark.parametrize(("status", "meaning"), ANSWERS)
def test_what_an_answer_means(status: int, meaning: Answer) -> None:
    assert answer_meaning(status) == meaning


@pytest.mark.parametrize(("status", "meaning"), [answer for answer in ANSWERS if answer[1] in {"retry", "give up"}])
def test_a_failing_answer_is_posted_three_times_when_retried_and_once_otherwise(status: int, meaning: Answer) -> None:
    sleeps: list[float] = []
    endpoint = Endpoint(*[(status, b"")] * 3)
    delivered = webhook(endpoint, sleeps).deliver(TARGET, TASK)
    assert (delivered.outcome, delivered.reason) == ("failed", f"the endpoint answered {status}")
    expected = (3, [0.25, 0.5]) if meaning == "retry" else (1, [])
    assert (len(endpoint.requests), sleeps) == expected


@pytest.mark.parametrize(
    ("environment", "allowed"),
    [
        ({}, False),
        ({PRIVATE_ENDPOINTS_VARIABLE: "allow"}, True),
        ({PRIVATE_ENDPOINTS_VARIABLE: "ALLOW"}, False),
        ({PRIVATE_ENDPOINTS_VARIABLE: "true"}, False),
        ({PRIVATE_ENDPOINTS_VARIABLE: ""}, False),
        ({"OTHER": "allow"}, False),
    ],
)
def test_only_the_exact_opt_in_allows_private_endpoints(environment: dict[str, str], allowed: bool) -> None:
    assert private_endpoints_allowed(environment) is allowed


def test_a_host_that_does_not_resolve_is_retried_like_an_unreachable_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRIVATE_ENDPOINTS_VARIABLE, raising=False)
    lookups: list[str] = []

    def public(host: str) -> bool:
        lookups.append(host)
        if len(lookups) < 3:
            raise OSError("Name or service not known")
        return True

    sleeps: list[float] = []
    endpoint = Endpoint((202, b""))
    channel = WebhookChannel(post=endpoint, sleep=sleeps.append, clock=lambda: NOW, public=public)
    assert channel.deliver(TARGET, TASK).outcome == "accepted"
    assert (len(lookups), len(endpoint.requests), sleeps) == (3, 1, [0.25, 0.5])

    def unresolvable(host: str) -> bool:
        raise OSError("Name or service not known")

    endpoint = Endpoint()
    channel = WebhookChannel(post=endpoint, sleep=sleeps.append, clock=lambda: NOW, public=unresolvable)
    delivered = channel.deliver(TARGET, TASK)
    assert (delivered.outcome, endpoint.requests) == ("failed", [])
    assert delivered.reason == "the endpoint's host did not resolve: Name or service not known"


@pytest.mark.parametrize(
    "target", [Target("agent-1", None, "s3cret-s3cret-s3cret"), Target("agent-1", TARGET.endpoint, None)]
)
def test_an_agent_without_an_endpoint_or_a_secret_is_not_called(target: Target) -> None:
    endpoint = Endpoint()
    delivered = webhook(endpoint).deliver(target, TASK)
    assert (delivered.outcome, endpoint.requests) == ("failed", [])
    assert "no webhook endpoint or secret" in delivered.reason
