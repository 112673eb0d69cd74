"""The `webhook` channel: each leased task is POSTed to the agent's endpoint, signed.

The request body is the leased task (the same JSON `POST .../tasks/next` answers). Headers:
- `X-OpsCore-Timestamp`: Unix seconds when it was signed;
- `X-OpsCore-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the agent's `webhook_secret`, of the
  timestamp, a `.`, and the body bytes. Receivers check it with `verify_signature`, and refuse old timestamps.

The answer decides the attempt: 200 with a task result as its body completes it now (synchronous processing); 202
means the agent works on it and reports the result (and heartbeats) through the API later (asynchronous). Other 4xx
answers (and redirects, which are not followed) fail the attempt at once; 5xx, 408, 429 and network errors are
retried a few times, then fail it. A retry after a timeout may deliver an attempt twice: receivers deduplicate on
(`task_id`, `attempt`).

Endpoints are agents' own choice, so a delivery goes only to public addresses: a host that resolves to a private,
loopback or link-local address is refused, unless OPSCORE_WEBHOOK_PRIVATE_ENDPOINTS=allow (the local runtime and
the tests set it; a deployed stack does not). Registration applies the same rule (`public_address`, and the same
opt-in) to what the host spells without a DNS lookup: an address in any notation (`10.0.0.1`, `[::1]`, `2130706433`)
and the names `localhost` and `*.localhost`; a name is looked up at each delivery, as its addresses may change.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from opscore.core.errors import FieldProblem
from opscore.core.retry import Backoff, attempts
from opscore.dispatch.delivery import Delivery, Target
from opscore.dispatch.models import TaskResult

if TYPE_CHECKING:
    from opscore.agents.models import RegistrationRequest
    from opscore.dispatch.models import LeasedTask

PRIVATE_ENDPOINTS_VARIABLE = "OPSCORE_WEBHOOK_PRIVATE_ENDPOINTS"
SIGNATURE_HEADER = "X-OpsCore-Signature"
TIMESTAMP_HEADER = "X-OpsCore-Timestamp"
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 0.25
MAX_ANSWER_BYTES = 256 * 1024
RETRIED_STATUSES = frozenset({408, 429})
# low == high: fixed pauses of 0.25 s, then 0.5 s, so a delivery's worst case (three timeouts, two pauses) stays
# a known bound for the dispatcher that waits on it.
BACKOFF = Backoff(BACKOFF_SECONDS, BACKOFF_SECONDS, exponential=True)

# (url, body, headers, timeout) -> (status, answer body); raises OSError when nothing came back.
Post = Callable[[str, bytes, dict[str, str], float], tuple[int, bytes]]

# What an endpoint's HTTP answer means for the attempt.
Answer = Literal["accepted", "completed", "retry", "give up"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, timestamp: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "opscore-webhook",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def answer_meaning(status: int) -> Answer:
    """202: the agent took the task and reports later; 200: the body is its result. 5xx, 408 and 429 are the
    endpoint's passing trouble, worth another try; any other answer (4xx, and 3xx: redirects are not followed) would
    come back the same."""
    if status == 202:
        return "accepted"
    if status == 200:
        return "completed"
    return "retry" if status >= 500 or status in RETRIED_STATUSES else "give up"


def public_address(address: str) -> bool:
    """The one rule for where a webhook may go: a globally routable address (not private, loopback, link-local,
    unique-local, reserved...), an IPv4-mapped IPv6 address judged by its IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (`fe80::1%eth0`) names no other address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not embedded.is_global:
            return False
        ip = ip.ipv4_mapped or ip
    return ip.is_global


# IPv6 prefixes whose last 32 bits are an IPv4 address a gateway may forward to: NAT64's well-known prefix, and the
# deprecated IPv4-compatible addresses (`::10.0.0.1`).
_IPV4_CARRIERS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if ip.ipv4_mapped is not None or ip.sixtofour is not None:
        return ip.ipv4_mapped or ip.sixtofour
    if any(ip in network for network in _IPV4_CARRIERS) and int(ip) > 1:  # :: and ::1 are judged as they are
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def literal_host_problem(url: str) -> str | None:
    """Why the endpoint's host is a private address as written, without looking any name up; None when it is not."""
    host = (urlsplit(url).hostname or "").split("%", 1)[0].rstrip(".").lower()  # an IPv6 zone changes no address
    if not host.isascii():
        # The HTTP client sends a name as IDNA spells it, which folds full-width digits and letters and ideographic
        # full stops (U+FF11 U+FF10, U+3002: a full-width 10.0.0.1 is 10.0.0.1): judge the host it will connect to.
        try:
            host = host.encode("idna").decode("ascii").rstrip(".")
        except UnicodeError:
            return f"endpoint host {host} is not a valid host name"
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return f"endpoint host {host} is a loopback name; webhooks are delivered to public addresses only"
    address = _literal_address(host)
    if address is None or public_address(address):
        return None  # a public address, or a name: resolved, and checked, at each delivery
    return f"endpoint host {host} is not a public address; webhooks are delivered to public addresses only"


def _literal_address(host: str) -> str | None:
    """The address a host spells, in any notation a connection accepts (`10.0.0.1`, `::1`, and the legacy IPv4 ones
    such as `2130706433` or `0x7f.1`); None for a name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(ipaddress.IPv4Address(socket.inet_aton(host)))  # parses, never looks anything up
    except (OSError, UnicodeError, ValueError):
        return None


def private_endpoints_allowed(environment: Mapping[str, str]) -> bool:
    """Only the exact opt-in lifts the guard: a deployed stack never sets it, so anything else keeps it."""
    return environment.get(PRIVATE_ENDPOINTS_VARIABLE) == "allow"


@dataclass(frozen=True)
class _Retry:
    """An attempt that did not go through but may next time, and why."""

    reason: str


def verify_signature(  # noqa: PLR0917 - the receiver's four inputs, and its tolerance
    secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None, tolerance_seconds: int = 300
) -> bool:
    """A receiver's check: the signature matches, and the timestamp is recent (so a captured request cannot be
    replayed later)."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(sign(secret, timestamp, body), signature)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is the endpoint's answer, not a hop to follow: following would send the task (as a GET) elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002 - the stdlib hook's signature
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - checked scheme
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as error:
        return error.code, error.read(MAX_ANSWER_BYTES)


def _resolves_publicly(url: str) -> bool:
    """Every address the endpoint's host resolves to is a public one (raises OSError when it does not resolve)."""
    host = urlsplit(url).hostname or ""
    addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    return bool(addresses) and all(public_address(address) for address in addresses)


class WebhookChannel:
    pushes = True

    def __init__(
        self,
        post: Post = _post,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        public: Callable[[str], bool] = _resolves_publicly,
    ) -> None:
        self._post = post
        self._sleep = sleep
        self._clock = clock
        self._public = public

    def check(self, registration: RegistrationRequest) -> list[FieldProblem]:
        problems = []
        if registration.endpoint is None:
            problems.append(FieldProblem("endpoint", "webhook delivery needs the URL to POST tasks to"))
        elif not private_endpoints_allowed(os.environ):
            private = literal_host_problem(registration.endpoint)
            if private is not None:
                problems.append(FieldProblem("endpoint", private, type="private_endpoint"))
        if registration.webhook_secret is None:
            problems.append(FieldProblem("webhook_secret", "webhook delivery needs a secret to sign tasks with"))
        return problems

    def deliver(self, target: Target, task: LeasedTask) -> Delivery:
        if target.endpoint is None or target.secret is None:
            return Delivery("failed", reason="the agent has no webhook endpoint or secret registered")
        body = task.model_dump_json().encode()
        reason = ""
        for _ in attempts(ATTEMPTS, BACKOFF, sleep=self._sleep):
            outcome = self._attempt(target.endpoint, target.secret, body)
            if isinstance(outcome, Delivery):
                return outcome
            reason = outcome.reason
        return Delivery("failed", reason=reason)

    def _attempt(self, endpoint: str, secret: str, body: bytes) -> Delivery | _Retry:
        """One try: the delivery once it is decided, or why to try again."""
        # Resolved on every attempt: a failed lookup is retried like a failed request, and the addresses may change.
        try:
            if not (private_endpoints_allowed(os.environ) or self._public(endpoint)):
                return Delivery("failed", reason="the endpoint resolves to a private address; it is not called")
        except OSError as error:
            return _Retry(f"the endpoint's host did not resolve: {error}")
        timestamp = str(int(self._clock()))
        try:
            status, answer = self._post(endpoint, body, signed_headers(secret, timestamp, body), TIMEOUT_SECONDS)
        except Exception as error:  # anything the transport raises means nothing came back: worth another try
            return _Retry(f"the endpoint could not be reached: {type(error).__name__}: {error}")
        return _answered(status, answer)


def _answered(status: int, answer: bytes) -> Delivery | _Retry:
    meaning = answer_meaning(status)
    if meaning == "accepted":
        return Delivery("accepted")
    if meaning == "completed":
        return _synchronous_result(answer)
    reason = f"the endpoint answered {status}"
    return _Retry(reason) if meaning == "retry" else Delivery("failed", reason=reason)


def _synchronous_result(answer: bytes) -> Delivery:
    try:
        return Delivery("completed", result=TaskResult.model_validate_json(answer))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        return Delivery("failed", reason=f"the endpoint answered 200 without a valid task result ({problems})")


CHANNEL = WebhookChannel()
