"""`opscore local`: the whole Ops-Core API on 127.0.0.1, served by the real handlers on an in-process AWS."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import parse_qsl, urlsplit

from opscore_tools.dashboard.web import Dashboard, Reply
from opscore_tools.local.emulation import Emulation
from opscore_tools.local.gateway import MAX_PAYLOAD_BYTES, Gateway, HttpRequest, HttpResponse
from opscore_tools.local.lambdas import LambdaRuntime
from opscore_tools.local.logsink import JsonLinesSink
from opscore_tools.local.schedules import Scheduler
from opscore_tools.local.template import Template, Throttle, load_template
from opscore_tools.logs.local_file import LocalFile
from opscore_tools.request_body import length_or_refuse, read_body
from opscore_tools.serving import READ_TIMEOUT_SECONDS, JsonErrorsHandler, Server
from opscore_tools.target import API_BASE_PATH


@dataclass(frozen=True)
class AdminKey:
    value: str
    key_id: str
    generated: bool


class LocalOpsCore:
    """Everything `opscore local` runs, usable from tests too: start(), the URL, stop()."""

    def __init__(
        self,
        template_path: Path,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int = 3000,
        schedule_seconds: float | None = None,
        *,
        per_key_throttle: Throttle | None = None,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        """`per_key_throttle`: each key's limit, instead of the template's usage plan (a rate of 0: no limit)."""
        self.template: Template = load_template(template_path)
        self._per_key_throttle = per_key_throttle
        self._schedule_seconds = schedule_seconds
        self._scheduler: Scheduler | None = None
        self.sink = JsonLinesSink(log_path)
        self._host, self._port = host, port
        self._emulation = Emulation(self.template)
        self._read_timeout = read_timeout
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.gateway: Gateway | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{self._host}:{self._server.server_port}"

    def start(self, admin_key: str | None) -> AdminKey:
        """Start the emulation, install the admin key, bind the port (0 picks a free one); serve in the background."""
        runtime = LambdaRuntime(self.template, stdout=cast(TextIO, self.sink))
        self._emulation.start(runtime.invoke)
        self._route_logs_to_sink()
        admin = self._install_admin_key(admin_key)
        self.gateway = Gateway(self.template, runtime, per_key=self._per_key_throttle, audit=self._audit)
        dashboard = Dashboard(self._log_file, self._admin_status)
        handler = _handler_class(self.gateway, self.sink, dashboard, self._read_timeout)
        self._server = Server((self._host, self._port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="opscore-local", daemon=True)
        self._thread.start()
        self._scheduler = Scheduler(self.template.schedules, runtime.invoke, self._schedule_seconds)
        self._scheduler.start()
        self.sink.record("INFO", "local runtime started", "runtime_started", url=self.url, admin_key_id=admin.key_id)
        return admin

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._emulation.stop()
        self.sink.record("INFO", "local runtime stopped", "runtime_stopped")
        self.sink.close()

    def _audit(self, request_id: str, fields: dict[str, Any]) -> None:
        """A request the gateway refused, as the functions' audit lines are shaped (in AWS: the API's access log)."""
        message = f"audit: {fields['action']} {fields['outcome']} ({fields['status']})"
        self.sink.record("INFO", message, "audit", correlation_id=request_id, **fields)

    def _log_file(self) -> LocalFile:
        return LocalFile(self.sink.path)

    def _admin_status(self, key: str) -> int:
        """What the API answers the key on an admin-only route: the dashboard's log view is for admins."""
        assert self.gateway is not None, "not started"
        probe = HttpRequest("GET", API_BASE_PATH + "/agents", [("limit", "1")], [("X-API-Key", key)])
        return self.gateway.handle(probe).status

    def _route_logs_to_sink(self) -> None:
        # Every Powertools Logger of the library shares one handler; point it at the log file instead of stdout.
        from opscore.core.observability import logger

        handler = logger.registered_handler
        if hasattr(handler, "setStream"):
            handler.setStream(self.sink)
        # moto logs every failure its state machines catch (a failed or timed-out attempt: ordinary, recorded on the
        # session) as an ERROR with the whole state dumped; only its own breakdowns are worth a line.
        logging.getLogger("moto").setLevel(logging.CRITICAL)

        # Warnings a function raises go where Lambda's stderr goes: into the logs, not onto the console.
        def log_warning(  # noqa: PLR0917 - warnings.showwarning's signature
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,  # noqa: ARG001
            line: str | None = None,  # noqa: ARG001
        ) -> None:
            where = f"{filename}:{lineno}"
            self.sink.record("WARNING", str(message), "warning", warning=category.__name__, location=where)

        warnings.showwarning = log_warning

    def _install_admin_key(self, admin_key: str | None) -> AdminKey:
        from opscore import wiring
        from opscore.keys.models import Role
        from opscore.keys.service import generate_key

        wiring.reset()  # services built before the emulation started would talk to the wrong AWS
        value = admin_key or generate_key()
        installed = wiring.api_keys().install(value, Role.ADMIN, None, created_by="opscore-local")
        return AdminKey(value=value, key_id=installed.key_id, generated=admin_key is None)


def _handler_class(
    gateway: Gateway, sink: JsonLinesSink, dashboard: Dashboard, read_timeout: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonErrorsHandler):
        server_version = "opscore-local"
        timeout = read_timeout

        def serve(self) -> None:
            parts = urlsplit(self.path)
            length = length_or_refuse(self)
            if length is None:
                return
            if Dashboard.owns(parts.path):
                # Not logged: the dashboard's own files and its log view's polling would fill the log it shows.
                self._send_dashboard(parts.path, parts.query, length)
                return
            started = time.perf_counter()
            response = gateway_answer(gateway, self, length)
            if response is None:
                return  # its body never came whole: refused already
            self._send(response)
            request_id = response.headers.get("x-amzn-RequestId")
            sink.record(
                "INFO",
                "http request",
                "http_request",
                correlation_id=request_id,
                method=self.command,
                path=urlsplit(self.path).path,  # not the query: nothing secret belongs there, but nothing is logged
                status=response.status,
                function=response.function,
                request_id=request_id,
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
            )

        def _send_dashboard(self, path: str, query: str, length: int) -> None:
            reply = dashboard_reply(dashboard, self, path, query, length)
            self._send(HttpResponse(reply.status, reply.headers, reply.body))

        def _send(self, response: HttpResponse) -> None:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

    return Handler


def dashboard_reply(dashboard: Dashboard, request: BaseHTTPRequestHandler, path: str, query: str, length: int) -> Reply:
    if length:
        request.close_connection = True  # the dashboard takes no body: answer and close rather than read one
    return dashboard.handle(request.command, path, parse_qsl(query, keep_blank_values=True), request.headers.items())


def gateway_answer(gateway: Gateway, request: BaseHTTPRequestHandler, length: int) -> HttpResponse | None:
    """The API's answer to the request, its body read (`length` bytes) unless it is over API Gateway's limit; None
    when the body did not all come (answered already)."""
    if length > MAX_PAYLOAD_BYTES:
        # Read nothing of it: answer and close, as API Gateway does.
        request.close_connection = True
        return gateway.payload_too_large()
    parts = urlsplit(request.path)
    body = read_body(request, length) if length else b""
    if body is None:
        return None
    return gateway.handle(
        HttpRequest(
            method=request.command,
            path=parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers=list(request.headers.items()),
            body=body,
            source_ip=request.client_address[0],
        )
    )
