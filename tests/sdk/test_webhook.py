"""opscore_sdk.webhook checks deliveries exactly as Ops-Core signs them, and its WSGI and ASGI apps answer as the
dispatcher expects: 200 with a TaskResult, 202 when the handler defers, 401 on a bad signature, 400 on a bad body."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from opscore.dispatch.delivery.webhook import answer_meaning, signed_headers
from opscore.dispatch.models import TaskResult as ServiceTaskResult
from opscore_sdk import AgentFault, NotRetryable, webhook
from opscore_sdk.models import LeasedTask
from tests.sdk.test_retries import LEASED

SECRET = "a-webhook-secret-of-16+"
NOW = 1_800_000_000
BODY = json.dumps(LEASED).encode()


def _delivery(body: bytes = BODY, *, secret: str = SECRET, signed_at: int = NOW) -> dict[str, str]:
    """The headers Ops-Core's own webhook channel sends with `body`."""
    return signed_headers(secret, str(signed_at), body)


def test_a_delivery_signed_by_ops_core_verifies_and_gives_the_task() -> None:
    task = webhook.verify(SECRET, _delivery(), BODY, now=NOW + 10)

    assert isinstance(task, LeasedTask)
    assert (task.task_id, task.attempt) == (LEASED["task_id"], 1)


def test_header_names_are_matched_in_any_case() -> None:
    lower = {name.lower(): value for name, value in _delivery().items()}

    assert webhook.verify(SECRET, lower, BODY, now=NOW).action == "web.fetch"


@pytest.mark.parametrize(
    ("headers", "body", "why"),
    [
        (_delivery(secret="another-secret-of-16+"), BODY, "signed with another secret"),
        (_delivery(), BODY.replace(b"web.fetch", b"web.steal"), "a body changed after signing"),
        (_delivery(signed_at=NOW - 301), BODY, "a replay older than the tolerance"),
        (_delivery(signed_at=NOW + 301), BODY, "a timestamp too far ahead"),
        ({**_delivery(), "X-OpsCore-Timestamp": "yesterday"}, BODY, "a timestamp that is not Unix seconds"),
        ({"X-OpsCore-Timestamp": str(NOW)}, BODY, "no signature"),
        ({**_delivery(), "X-OpsCore-Signature": "sha256=" + "0" * 64}, BODY, "a forged signature"),
    ],
)
def test_deliveries_not_from_ops_core_or_not_recent_are_refused(headers: dict[str, str], body: bytes, why: str) -> None:
    with pytest.raises(webhook.InvalidSignature):
        webhook.verify(SECRET, headers, body, now=NOW)


def test_the_tolerance_is_the_caller_s_choice() -> None:
    headers = _delivery(signed_at=NOW - 100)

    assert webhook.verify(SECRET, headers, BODY, now=NOW, tolerance=100).task_id == LEASED["task_id"]
    with pytest.raises(webhook.InvalidSignature):
        webhook.verify(SECRET, headers, BODY, now=NOW, tolerance=99)


def test_a_signed_body_that_is_not_a_task_is_a_value_error() -> None:
    body = b'{"not": "a task"}'

    with pytest.raises(ValueError, match="not a leased task"):
        webhook.verify(SECRET, _delivery(body), body, now=NOW)


def test_sign_matches_the_service_s_signature() -> None:
    assert webhook.sign(SECRET, str(NOW), BODY) == _delivery()["X-OpsCore-Signature"]


# --- the receiver apps, through httpx's WSGI and ASGI transports

Handler = Callable[[LeasedTask], Any]


def _post_wsgi(handler: Handler, headers: dict[str, str], body: bytes = BODY) -> httpx.Response:
    app = webhook.wsgi_app(SECRET, handler, clock=lambda: NOW)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://agent.test") as client:
        return client.post("/tasks", content=body, headers=headers)


async def _post_asgi(handler: Handler, headers: dict[str, str], body: bytes = BODY) -> httpx.Response:
    app = webhook.asgi_app(SECRET, handler, clock=lambda: NOW)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent.test") as client:
        return await client.post("/tasks", content=body, headers=headers)


def _fetch(task: LeasedTask) -> dict[str, Any]:
    return {"status": "succeeded", "output": {"fetched": task.input.get("url", "nothing")}}


def _defer(task: LeasedTask) -> object:
    return webhook.DEFERRED


def _crash(task: LeasedTask) -> object:
    raise TimeoutError("the page did not load")


def _accepted_by_ops_core(response: httpx.Response) -> ServiceTaskResult:
    """What the dispatcher makes of the answer: its meaning, and the result it would record."""
    assert answer_meaning(response.status_code) == "completed"
    return ServiceTaskResult.model_validate_json(response.content)


def test_wsgi_answers_the_handler_s_result_as_ops_core_takes_it() -> None:
    response = _post_wsgi(_fetch, _delivery())

    result = _accepted_by_ops_core(response)
    assert result.status == "succeeded"
    assert result.attempt == 1, "for the attempt delivered"
    assert result.output == {"fetched": "nothing"}


def test_wsgi_answers_202_when_the_handler_defers() -> None:
    response = _post_wsgi(_defer, _delivery())

    assert response.status_code == 202
    assert answer_meaning(response.status_code) == "accepted"


def test_wsgi_turns_a_handler_s_exception_into_a_failed_result() -> None:
    result = _accepted_by_ops_core(_post_wsgi(_crash, _delivery()))

    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.type, result.error.message) == ("TimeoutError", "the page did not load")


def test_wsgi_refuses_a_bad_signature_with_401_and_a_bad_body_with_400_without_calling_the_handler() -> None:
    called: list[LeasedTask] = []

    def handler(task: LeasedTask) -> object:
        called.append(task)
        return webhook.DEFERRED

    bad_body = b"[1, 2]"
    assert _post_wsgi(handler, _delivery(secret="another-secret-of-16+")).status_code == 401
    assert _post_wsgi(handler, _delivery(signed_at=NOW - 3600)).status_code == 401
    assert _post_wsgi(handler, _delivery(bad_body), bad_body).status_code == 400
    assert called == []


@pytest.mark.asyncio
async def test_asgi_runs_an_async_handler_and_answers_its_result() -> None:
    async def handler(task: LeasedTask) -> dict[str, Any]:
        return {"status": "succeeded", "output": {"action": task.action}}

    result = _accepted_by_ops_core(await _post_asgi(handler, _delivery()))

    assert result.output == {"action": "web.fetch"}
    assert result.attempt == 1


@pytest.mark.asyncio
async def test_asgi_takes_a_plain_handler_too_and_answers_as_wsgi_does() -> None:
    assert (await _post_asgi(_defer, _delivery())).status_code == 202
    assert _accepted_by_ops_core(await _post_asgi(_crash, _delivery())).status == "failed"
    assert (await _post_asgi(_fetch, _delivery(signed_at=NOW + 3600))).status_code == 401
    assert (await _post_asgi(_fetch, _delivery(b"{}"), b"{}")).status_code == 400


@pytest.mark.parametrize("returned", [None, [1, 2], "done"])
def test_a_handler_answering_something_other_than_a_result_fails_the_attempt_rather_than_answering_500(
    returned: object,
) -> None:
    # Given a handler that returns neither a TaskResult nor DEFERRED
    # When a delivery reaches it
    response = _post_wsgi(lambda _task: returned, _delivery())

    # Then the attempt fails, in an answer Ops-Core takes (a 500 would have the task delivered again)
    result = _accepted_by_ops_core(response)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "TypeError"


@pytest.mark.asyncio
async def test_the_receivers_report_not_retryable_and_agent_faults_and_make_the_type_acceptable() -> None:
    # Given handlers raising a failure not worth retrying, an agent fault, and an exception whose name the API refuses
    def refuse(task: LeasedTask) -> object:
        raise NotRetryable("the url is not a url")

    def crash(task: LeasedTask) -> object:
        raise AgentFault("the browser crashed")

    def odd(task: LeasedTask) -> object:
        raise type("Bad Thing", (Exception,), {})("odd")

    # When deliveries reach them, by WSGI and by ASGI
    refused = _accepted_by_ops_core(_post_wsgi(refuse, _delivery()))
    crashed = _accepted_by_ops_core(await _post_asgi(crash, _delivery()))
    oddly = _accepted_by_ops_core(_post_wsgi(odd, _delivery()))

    # Then each failure says so as a worker's would, in a result Ops-Core takes
    assert refused.error is not None
    assert refused.error.model_dump(exclude_none=True)["retryable"] is False
    assert crashed.error is not None
    assert crashed.error.fault == "agent"
    assert oddly.error is not None
    assert oddly.error.type == "Bad_Thing"


@pytest.mark.parametrize("timestamp", ["9" * 400, "²", "-5", " 1800000000"])
def test_a_timestamp_that_is_not_plain_unix_seconds_is_refused_as_a_bad_signature(timestamp: str) -> None:
    # Given a delivery whose timestamp is not a short run of ASCII digits
    headers = {**_delivery(), "X-OpsCore-Timestamp": timestamp}

    # When it is checked
    # Then it is refused (never an OverflowError)
    with pytest.raises(webhook.InvalidSignature):
        webhook.verify(SECRET, headers, BODY, now=NOW)


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_a_content_length_that_is_not_a_number_of_bytes_is_answered_400(length: str) -> None:
    # Given a WSGI request whose Content-Length is not a number of bytes
    app = webhook.wsgi_app(SECRET, _fetch, clock=lambda: NOW)
    answered: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": length, "wsgi.input": io.BytesIO(BODY)}
    environ |= {"HTTP_" + name.upper().replace("-", "_"): value for name, value in _delivery().items()}

    # When it reaches the receiver
    body = b"".join(app(environ, lambda status, _headers: answered.append(status)))

    # Then it is answered 400, naming the header
    assert answered == ["400 Bad Request"]
    assert b"Content-Length" in body


def test_the_python_check_in_docs_agents_md_agrees_with_the_sdk_and_never_raises() -> None:
    # Given the signature check docs/agents.md shows in Python
    text = (Path(__file__).resolve().parents[2] / "docs" / "agents.md").read_text()
    snippet = re.search(r"```python\n(import hashlib, hmac, time\n.*?)```", text, re.DOTALL)
    assert snippet is not None, "docs/agents.md has no Python signature check"
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the project's own documentation
    check = namespace["verify"]
    now = str(int(time.time()))

    # When it checks a good delivery and odd ones
    good = check(SECRET, now, webhook.sign(SECRET, now, BODY), BODY)
    odd = [check(SECRET, stamp, signature, BODY) for stamp, signature in [("²", "sha256=00"), (now, "sha256=é")]]

    # Then it takes the good one and refuses the others without raising
    assert good is True
    assert odd == [False, False]
