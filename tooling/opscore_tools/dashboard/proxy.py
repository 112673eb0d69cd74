"""`opscore dashboard`: the dashboard on 127.0.0.1 in front of an Ops-Core API (a deployed stack, or any URL).

The browser talks to this one origin only: /ui is the dashboard (opscore_tools.dashboard.web), and /v1/opscore/* is
forwarded to the API as it came (method, body, X-API-Key), its answer returned as it came, so the page needs no CORS
and the key goes nowhere but to the API. Nothing is stored: each request carries the key the browser signed in with.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from opscore_tools.dashboard.web import FOLLOW_SECONDS, Dashboard, Reply
from opscore_tools.logs.sources import LogSource
from opscore_tools.request_body import length_or_refuse, read_body
from opscore_tools.serving import READ_TIMEOUT_SECONDS, JsonErrorsHandler, Server
from opscore_tools.target import API_BASE_PATH

FORWARD_TIMEOUT_SECONDS = 30
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's own limit: a larger body would be refused there anyway
# Request headers the API reads; nothing else of the browser's (cookies, ...) leaves this machine.
FORWARDED_REQUEST_HEADERS = ("x-api-key", "content-type", "idempotency-key", "accept")
FORWARDED_RESPONSE_HEADERS = ("content-type", "retry-after", "x-amzn-requestid")


class Upstream:
    """The API behind the dashboard: `base_url` ends in /v1/opscore."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def forward(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes | None) -> Reply:
        url = self.base_url + path.removeprefix(API_BASE_PATH) + (f"?{query}" if query else "")
        sent = {name: value for name, value in headers.items() if name.lower() in FORWARDED_REQUEST_HEADERS}
        request = urllib.request.Request(url, data=body, method=method, headers=sent)  # noqa: S310 - the operator's API
        try:
            with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT_SECONDS) as answer:  # noqa: S310
                return Reply(answer.status, answer.read(), _kept(answer.headers.items()))
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read(), _kept(error.headers.items()))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            # Unreachable, timed out, or the API hung up mid-answer (RemoteDisconnected, IncompleteRead).
            reason = getattr(error, "reason", None) or error.__class__.__name__ + (f": {error}" if str(error) else "")
            return Reply(
                502,
                json.dumps(
                    {"error": {"code": "bad_gateway", "message": f"cannot reach {self.base_url}: {reason}"}}
                ).encode(),
                {"Content-Type": "application/json"},
            )

    def admin_status(self, key: str) -> int:
        """The API's answer to the key on GET /agents (admin only): 200 for an admin key, 403 for an agent's."""
        return self.forward("GET", API_BASE_PATH + "/agents", "limit=1", {"X-API-Key": key}, None).status


def _kept(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name: value for name, value in headers if name.lower() in FORWARDED_RESPONSE_HEADERS}


class DashboardServer:
    """The dashboard and the forwarding, served in the background on host:port (0 picks a free port)."""

    def __init__(
        self,
        api_url: str,
        log_source: Callable[[], LogSource],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        follow_seconds: float = FOLLOW_SECONDS,
        source_flags: str = "",
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ):
        self.upstream = Upstream(api_url)
        self._dashboard = Dashboard(
            log_source, self.upstream.admin_status, follow_seconds=follow_seconds, source_flags=source_flags
        )
        self._server = Server((host, port), _handler_class(self._dashboard, self.upstream, host, read_timeout))
        self._host = host
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="opscore-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which never ran if not started
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def _handler_class(
    dashboard: Dashboard, upstream: Upstream, host: str, read_timeout: float
) -> type[BaseHTTPRequestHandler]:
    hosts = frozenset({"127.0.0.1", "localhost", host.lower()})
    attributes = {"dashboard": dashboard, "upstream": upstream, "hosts": hosts, "timeout": read_timeout}
    return type("Handler", (_Handler,), attributes)


class _Handler(JsonErrorsHandler):
    server_version = "opscore-dashboard"
    dashboard: Dashboard
    upstream: Upstream
    hosts: frozenset[str]  # the names the browser may call this server by

    def serve(self) -> None:
        parts = urlsplit(self.path)
        if not self._host_is_ours():
            # A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) must not reach the API from here.
            self.close_connection = True
            message = f"the dashboard answers only to {', '.join(sorted(self.hosts))} as its Host"
            body = json.dumps({"error": {"code": "forbidden", "message": message}}).encode()
            self._send(Reply(403, body, {"Content-Type": "application/json"}))
            return
        length = length_or_refuse(self)
        if length is None:
            return
        if Dashboard.owns(parts.path):
            if length:
                self.close_connection = True  # the dashboard takes no body: answer and close rather than read one
            query = parse_qsl(parts.query, keep_blank_values=True)
            self._send(self.dashboard.handle(self.command, parts.path, query, self.headers.items()))
        elif parts.path == API_BASE_PATH or parts.path.startswith(API_BASE_PATH + "/"):
            self._forward(parts.path, parts.query, length)
        elif parts.path == "/":
            self._send(Reply(308, b"", {"Location": "/ui/"}))
        else:
            body = b'{"error": {"code": "not_found", "message": "the dashboard is at /ui/"}}'
            self._send(Reply(404, body, {"Content-Type": "application/json"}))

    def _host_is_ours(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.hosts

    def _forward(self, path: str, query: str, length: int) -> None:
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # read nothing of it, as API Gateway does
            self._send(Reply(413, b'{"message": "Request Too Long"}', {"Content-Type": "application/json"}))
            return
        body = read_body(self, length) if length else None
        if length and body is None:
            return  # it never came whole: refused already
        self._send(self.upstream.forward(self.command, path, query, dict(self.headers.items()), body))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
