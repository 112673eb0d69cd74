"""The SDK's own tests: no sockets (httpx's mock, WSGI and ASGI transports stand in for Ops-Core); the client against
the real API is tested in tests/e2e/test_sdk_over_http.py, on the local runtime that tier starts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pytest_socket import disable_socket, enable_socket

from opscore_sdk import AsyncOpsCore, OpsCore, RetryPolicy

BASE_URL = "http://opscore.test/v1/opscore"
API_KEY = "sdk-test-key"


@pytest.fixture(autouse=True)
def _no_sockets() -> Iterator[None]:
    disable_socket(allow_unix_socket=True)  # asyncio's event loop wakes itself through a Unix socket pair
    yield
    enable_socket()  # only for this tier: the end-to-end tier, in the same run, talks HTTP on loopback


class Recorder:
    """Answers requests from a script of replies (a status and body, or an exception to raise) and keeps each
    request, so a test can see what was sent and how often."""

    def __init__(self, *replies: tuple[int, Any] | tuple[int, Any, dict[str, str]] | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        status, body, *rest = reply
        headers = rest[0] if rest else {}
        content = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={"Content-Type": "application/json", **headers})

    def policy(self, max_attempts: int = 4) -> RetryPolicy:
        async def async_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        return RetryPolicy(
            max_attempts=max_attempts,
            base=0.5,
            cap=8.0,
            sleep=self.sleeps.append,
            async_sleep=async_sleep,
            random=lambda: 1.0,  # the top of each jitter range, so the waits are known
        )

    def client(self, max_attempts: int = 4) -> OpsCore:
        return OpsCore(BASE_URL, API_KEY, retries=self.policy(max_attempts), transport=httpx.MockTransport(self))

    def async_client(self, max_attempts: int = 4) -> AsyncOpsCore:
        return AsyncOpsCore(BASE_URL, API_KEY, retries=self.policy(max_attempts), transport=httpx.MockTransport(self))


def error_body(code: str, message: str = "it went wrong", **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}, "request_id": "req-123"}


RecorderFactory = Callable[..., Recorder]


@pytest.fixture
def answers() -> RecorderFactory:
    return Recorder
