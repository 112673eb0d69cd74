"""What the sync and async clients share around sending: building the request, deciding whether to retry, and
turning an answer into a value or an exception."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from opscore_sdk import __version__
from opscore_sdk._calls import Call
from opscore_sdk.errors import ConnectionFailed, OpsCoreError, UnexpectedResponse, error_from_answer
from opscore_sdk.retry import RETRIED_CONFLICTS, RETRIED_STATUSES, RetryPolicy

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: str | None
    timeout: float
    retries: RetryPolicy

    def client_options(self) -> dict[str, Any]:
        headers = {"User-Agent": f"opscore-sdk-python/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        # A trailing slash makes httpx append each route's path to the base path (/v1/opscore).
        return {"base_url": self.base_url.rstrip("/") + "/", "headers": headers, "timeout": self.timeout}


def build(client: httpx.Client | httpx.AsyncClient, call: Call[Any], timeout: float | None) -> httpx.Request:
    options: dict[str, Any] = {"params": call.query or None, "headers": call.headers or None}
    if call.json is not None:
        options["json"] = call.json
    elif call.content is not None:
        options["content"] = call.content
    if timeout is not None:
        options["timeout"] = timeout
    return client.build_request(call.method, call.path.lstrip("/"), **options)


def retry_delay(
    policy: RetryPolicy, call: Call[Any], attempt: int, *, response: httpx.Response | None, error: Exception | None
) -> float | None:
    """Seconds to wait before sending `call` again after its `attempt`-th try, or None to give up now."""
    if attempt >= policy.max_attempts:
        return None
    if error is not None:
        # A connection that was never made sent nothing: any request may go again. A request that may have reached
        # Ops-Core (a read timeout, a dropped connection) goes again only when a repeat is harmless.
        never_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return policy.delay(attempt) if never_sent or call.safe else None
    assert response is not None
    return _answer_retry_delay(policy, call, attempt, response)


def _answer_retry_delay(policy: RetryPolicy, call: Call[Any], attempt: int, response: httpx.Response) -> float | None:
    if response.status_code == 429:
        # Throttled: the request was refused, not carried out, so it may go again whatever it is.
        return policy.delay(attempt, retry_after_seconds(response))
    if response.status_code == 409 and call.safe and _error_code(response) in RETRIED_CONFLICTS:
        # Ops-Core says "send it again": a repeat of the same request, still in progress or raced by another write.
        return policy.delay(attempt)
    if response.status_code not in RETRIED_STATUSES:
        return None
    return policy.delay(attempt, retry_after_seconds(response)) if call.safe else None


def _error_code(response: httpx.Response) -> str | None:
    try:
        envelope = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return envelope.get("code") if isinstance(envelope, dict) else None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds: a number of seconds, or an HTTP date (a proxy's); None if absent or
    unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; one without a zone is read as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def outcome[T](call: Call[T], response: httpx.Response) -> T:
    if not response.is_success:
        raise answer_error(response)
    try:
        return call.parse(response)
    except ValueError as unreadable:  # pydantic's ValidationError is one; so is a body that is not JSON
        raise UnexpectedResponse(
            f"{call.method} {call.path}: the answer does not fit the API's model: {unreadable}"[:2000],
            status=response.status_code,
            code="unexpected_response",
            body=response.text[:2000],
        ) from unreadable


def answer_error(response: httpx.Response) -> OpsCoreError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_from_answer(response.status_code, body, response.text, retry_after_seconds(response))


def no_answer(call: Call[Any], error: Exception) -> ConnectionFailed:
    return ConnectionFailed(
        f"{call.method} {call.path}: {type(error).__name__}: {error}", status=0, code="connection_error"
    )
