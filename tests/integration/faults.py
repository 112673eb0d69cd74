"""Fault injection: make an AWS call Ops-Core makes fail, at a named point, once or N times.

    injected = inject("dynamodb", "TransactWriteItems", "ThrottlingException", times=2, when=writing("result_seq"))
    ...
    assert injected.count == 2

A fault is answered at the client boundary (botocore's `before-call` event, see tests.integration.boundary) on the
clients `opscore.wiring` builds, so it holds whichever store or service makes the call. It stands for what Ops-Core's
code sees once botocore has given up: botocore's own retries (of throttles, of 5xx) happen after `before-call`, so an
injected fault skips them, as if every one of them had failed too.

Two kinds:
- refused (the default): the call does not reach AWS (moto), and raises the ClientError of `code`;
- `committed=True`: the call reaches AWS and takes effect, then its answer is lost and the ClientError is raised in
  its place: a write whose outcome the caller cannot know (a 500 or a timeout after the commit), or a function that
  dies right after it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore import xform_name
from botocore.exceptions import ReadTimeoutError

from opscore import wiring
from tests.integration.boundary import Answer, Intercepted, intercept

Request = dict[str, Any]
Predicate = Callable[[Request], bool]

# A transaction cancelled for one of these reasons carries them in CancellationReasons, one per item.
CANCELLATION_REASONS = frozenset({"TransactionConflict", "ConditionalCheckFailed", "ThrottlingError"})
# Not an error code: the call gets no answer at all (botocore's read timeout), raised instead of a ClientError.
NO_ANSWER = "ReadTimeout"
# The HTTP status AWS answers each error code with (400 for the rest).
STATUS_BY_CODE = {"InternalServerError": 500, "ServiceUnavailable": 503, "InternalFailure": 500}

CLIENTS: dict[str, Callable[[], Any]] = {
    "dynamodb": wiring.dynamodb,
    "stepfunctions": wiring.stepfunctions,
    "lambda": wiring.lambda_client,
}


def fault_answer(code: str, request: Request) -> Answer:
    """The error AWS answers with: `code`, or a TransactionCanceledException whose first item failed for `code`."""
    if code in CANCELLATION_REASONS:
        items = len(request.get("TransactItems", [])) or 1
        reasons = [{"Code": code}] + [{"Code": "None"}] * (items - 1)
        return Answer.error("TransactionCanceledException", f"injected: {code}", CancellationReasons=reasons)
    return Answer(STATUS_BY_CODE.get(code, 400), {"Error": {"Code": code, "Message": f"injected: {code}"}})


@dataclass
class Injection:
    """One fault, armed on one operation of one client. `count` says how many calls it failed so far."""

    client: Any
    operation: str
    code: str
    times: int
    when: Predicate
    committed: bool
    count: int = 0
    requests: list[Request] = field(default_factory=list)  # the calls it failed, as sent
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _interception: Intercepted | None = None

    def __post_init__(self) -> None:
        self._interception = intercept(self.client, self.operation, self._intercept)

    def _intercept(self, request: Request) -> Answer | None:
        with self._lock:
            if self.count >= self.times or not self.when(request):
                return None
            self.count += 1
            self.requests.append(request)
        if self.committed:
            # Made from inside the interception, so it goes through to AWS unseen (see boundary.Intercepted).
            getattr(self.client, xform_name(self.operation))(**request)
        if self.code == NO_ANSWER:
            raise ReadTimeoutError(endpoint_url=f"https://{self.operation}.injected")
        return fault_answer(self.code, request)

    @property
    def spent(self) -> bool:
        return self.count >= self.times

    def remove(self) -> None:
        if self._interception is not None:
            self._interception.remove()
            self._interception = None


def inject(
    service: str,
    operation: str,
    code: str,
    *,
    times: int = 1,
    when: Predicate | None = None,
    committed: bool = False,
) -> Injection:
    """Fail the next `times` calls of `operation` that `when` picks (all of them without one) with `code`.

    `service` is "dynamodb", "stepfunctions" or "lambda": the client `opscore.wiring` builds for it (build the
    services first if a fixture resets them: `clock` does). `code` is an AWS error code, a transaction's cancellation
    reason ("TransactionConflict", ...), or NO_ANSWER. Arm it after the set-up it should not hit.
    """
    return Injection(CLIENTS[service](), operation, code, times, when or (lambda _request: True), committed)


def writing(*markers: str) -> Predicate:
    """Picks the requests whose JSON holds every marker: an attribute name, a condition, a key prefix."""

    def picks(request: Request) -> bool:
        text = json.dumps(request)
        return all(marker in text for marker in markers)

    return picks


# The writes named in the fault matrix, by what only their request holds.
STATE_UPDATE = writing('"STATE#')  # an agent's new state and its history entry, in one transaction
LEASE = writing('":leased"', '":expires"')  # a queued attempt handed to its agent
RESULT = writing("result_seq")  # an agent's result, its attempt's end and its slot back
RUNNER_STEP = writing("task_token = :token, dispatch_seq")  # the runner's Task state queueing an attempt


def observe(service: str, operation: str, when: Predicate | None = None) -> list[Request]:
    """Every `operation` call the client makes from now on (that `when` picks), as sent; nothing is changed."""
    seen: list[Request] = []
    picks = when or (lambda _request: True)

    def record(request: Request) -> None:
        if picks(request):
            seen.append(request)

    intercept(CLIENTS[service](), operation, record)
    return seen
