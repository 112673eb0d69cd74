"""Faults and fakes at the boto3 client boundary, through botocore's `before-call` event.

A test that needs a rival writer, a refused transaction or a Step Functions answer of its choosing intercepts the AWS
call itself: the operation and its request, as AWS would see them. It does not patch our stores or services, so it
holds whichever store method makes the call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What an interceptor returns: None lets the call through to AWS (moto); an Answer is the call's response instead.
Interceptor = Callable[[dict[str, Any]], "Answer | None"]


@dataclass(frozen=True)
class _HttpStatus:
    status_code: int


@dataclass(frozen=True)
class Answer:
    """A response AWS might have given: botocore raises it as the ClientError for its code when status >= 300."""

    status: int
    body: dict[str, Any]

    @classmethod
    def ok(cls, body: dict[str, Any] | None = None) -> Answer:
        return cls(200, body or {})

    @classmethod
    def error(cls, code: str, message: str = "", **extra: Any) -> Answer:
        return cls(400, {"Error": {"Code": code, "Message": message}, **extra})


class Intercepted:
    """One interception; `remove()` lets the calls through again."""

    def __init__(self, client: Any, operation: str, intercept: Interceptor) -> None:
        self._events = client.meta.events
        self._event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
        self._intercept = intercept
        self._inside = threading.local()
        self._events.register(self._event, self._handle, unique_id=self._key)

    @property
    def _key(self) -> str:
        return f"tests.boundary.{id(self)}"

    def _handle(self, params: dict[str, Any], **_: Any) -> tuple[_HttpStatus, dict[str, Any]] | None:
        # The calls an interceptor makes itself (a rival's write, say) go through unseen.
        if getattr(self._inside, "active", False):
            return None
        self._inside.active = True
        try:
            answer = self._intercept(json.loads(params["body"] or b"{}"))
        finally:
            self._inside.active = False
        return None if answer is None else (_HttpStatus(answer.status), answer.body)

    def remove(self) -> None:
        self._events.unregister(self._event, unique_id=self._key)


def intercept(client: Any, operation: str, interceptor: Interceptor) -> Intercepted:
    """Call `interceptor(request)` before each `operation` the client makes (request: the decoded JSON body)."""
    return Intercepted(client, operation, interceptor)


def always(answer: Answer) -> Interceptor:
    """An interceptor that answers every call with `answer`."""
    return lambda _request: answer
