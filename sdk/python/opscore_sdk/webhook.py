"""Receiving tasks by webhook: check Ops-Core's signature, and a small WSGI or ASGI app that runs a handler.

Ops-Core POSTs each task leased to a `delivery: webhook` agent to its endpoint, the body being the LeasedTask as
JSON, with `X-OpsCore-Timestamp` (Unix seconds when it was signed) and `X-OpsCore-Signature`: `sha256=` and the hex
HMAC-SHA256, keyed with the agent's `webhook_secret`, of the timestamp, a `.` and the body bytes. A receiver checks
the signature (in constant time) and refuses a timestamp further than `tolerance` seconds from now, so a captured
delivery cannot be replayed later. Delivery is at least once: deduplicate on (`task_id`, `attempt`).

The receiver's answer decides the attempt: 200 with a TaskResult completes it now; 202 means the agent works on it
and reports the result through the API later (return `DEFERRED` from the handler).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from opscore_sdk._task import failed
from opscore_sdk.models import LeasedTask

SIGNATURE_HEADER: Final = "X-OpsCore-Signature"
TIMESTAMP_HEADER: Final = "X-OpsCore-Timestamp"
DEFAULT_TOLERANCE_SECONDS: Final = 300
MAX_BODY_BYTES: Final = 1024 * 1024
_MAX_TIMESTAMP_DIGITS: Final = 12


class InvalidSignature(Exception):
    """The delivery is not Ops-Core's, or not a recent one: answer 401 and do nothing with it."""


class _Deferred:
    def __repr__(self) -> str:
        return "DEFERRED"


# Returned by a handler that takes the task and reports its result through the API later (answered 202).
DEFERRED: Final = _Deferred()

Outcome = BaseModel | Mapping[str, Any] | _Deferred
Handler = Callable[[LeasedTask], Outcome]
AsyncHandler = Callable[[LeasedTask], Awaitable[Outcome] | Outcome]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature Ops-Core sends for `body` signed at `timestamp` (for tests and for senders of your own)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise InvalidSignature unless `signature` is Ops-Core's for `body` at `timestamp`, and `timestamp` is within
    `tolerance` seconds of `now` (default the current time)."""
    # ASCII digits only, and few of them: int() takes "²" or "-5" and would overflow turning 400 digits into a float.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
        raise InvalidSignature(f"the {TIMESTAMP_HEADER} header is not Unix seconds")
    signed_at = int(timestamp)
    age = (time.time() if now is None else now) - signed_at
    if abs(age) > tolerance:
        raise InvalidSignature(f"the delivery was signed {age:.0f} s from now, beyond the {tolerance:g} s tolerance")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise InvalidSignature("the signature does not match the body")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> LeasedTask:
    """Check a delivery from its headers (any case) and raw body; answer the task it carries.

    Raises InvalidSignature (answer 401) or ValueError when the signed body is not a task (answer 400).
    """
    found = {name.lower(): value for name, value in headers.items()}
    timestamp = found.get(TIMESTAMP_HEADER.lower())
    signature = found.get(SIGNATURE_HEADER.lower())
    if timestamp is None or signature is None:
        raise InvalidSignature(f"the delivery has no {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    verify_signature(secret, timestamp, signature, body, tolerance=tolerance, now=now)
    try:
        return LeasedTask.model_validate_json(body)
    except ValidationError as error:
        raise ValueError(f"the body is not a leased task: {error.error_count()} problem(s)") from error


# --- what both apps answer


def _answer(status: int, body: Any) -> tuple[int, bytes]:
    return status, json.dumps(body).encode()


def _refusal(error: Exception) -> tuple[int, bytes]:
    status = 401 if isinstance(error, InvalidSignature) else 400
    return _answer(status, {"error": str(error)})


def _result(task: LeasedTask, outcome: object) -> tuple[int, bytes]:
    if isinstance(outcome, _Deferred):
        return _answer(202, {"accepted": task.task_id})
    if isinstance(outcome, BaseModel):
        result = outcome.model_dump(mode="json", exclude_unset=True)
    elif isinstance(outcome, Mapping):
        result = dict(outcome)
    else:
        # Answering 500 would have Ops-Core deliver the task again and again: the handler's mistake fails the attempt.
        message = f"the handler returned {type(outcome).__name__}, not a TaskResult (a mapping or a model) or DEFERRED"
        return _failure(task, TypeError(message))
    # The result is for the attempt delivered, unless the handler said otherwise.
    result.setdefault("attempt", task.attempt)
    return _answer(200, result)


def _failure(task: LeasedTask, error: BaseException) -> tuple[int, bytes]:
    """A handler that raised fails the attempt as a worker's would: its type (made acceptable to the API) and message,
    `retryable: false` for NotRetryable, `fault: agent` for AgentFault."""
    return _answer(200, failed(task.attempt, error))


def _task_or_refusal(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance: float, clock: Callable[[], float]
) -> LeasedTask | tuple[int, bytes]:
    try:
        return verify(secret, headers, body, tolerance=tolerance, now=clock())
    except (InvalidSignature, ValueError) as error:
        return _refusal(error)


_REASONS = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request", 401: "401 Unauthorized"}
_REASONS |= {405: "405 Method Not Allowed", 413: "413 Content Too Large"}


# --- WSGI


def wsgi_app(
    secret: str,
    handler: Handler,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app that takes Ops-Core's deliveries: each verified task goes to `handler`, whose TaskResult (a model
    or a mapping) is answered 200; `DEFERRED` is answered 202; an exception fails the attempt with its type and
    message. A bad signature is 401, a body that is not a task 400."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, body = _wsgi_exchange(environ)
        start_response(_REASONS[status], [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _wsgi_exchange(environ: dict[str, Any]) -> tuple[int, bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(405, {"error": "deliveries are POSTed"})
        declared = environ.get("CONTENT_LENGTH") or "0"
        if not (declared.isascii() and declared.isdigit()):
            return _answer(400, {"error": "the Content-Length header is not a number of bytes"})
        length = int(declared)
        if length > MAX_BODY_BYTES:
            return _answer(413, {"error": "the body is too large for a task"})
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
        found = _task_or_refusal(secret, headers, body, tolerance, clock)
        if not isinstance(found, LeasedTask):
            return found
        try:
            outcome = handler(found)
        except Exception as error:  # the handler's failure is the task's, reported as its result
            return _failure(found, error)
        return _result(found, outcome)

    return app


# --- ASGI

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def asgi_app(
    secret: str,
    handler: AsyncHandler,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    """An ASGI app doing what `wsgi_app` does; `handler` may be a coroutine function or a plain one."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, body = await _asgi_exchange(scope, receive)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _asgi_exchange(scope: dict[str, Any], receive: Receive) -> tuple[int, bytes]:
        if scope.get("method") != "POST":
            return _answer(405, {"error": "deliveries are POSTed"})
        body = await _read_body(receive)
        if body is None:
            return _answer(413, {"error": "the body is too large for a task"})
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}
        found = _task_or_refusal(secret, headers, body, tolerance, clock)
        if not isinstance(found, LeasedTask):
            return found
        try:
            outcome = handler(found)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as error:  # the handler's failure is the task's, reported as its result
            return _failure(found, error)
        return _result(found, outcome)

    return app


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
