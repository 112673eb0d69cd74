"""What the tooling's two HTTP servers (`opscore local` and `opscore dashboard`) share below their routes: a listen
backlog that takes a burst of connections, a read timeout so a client that stops sending cannot hold a thread, the
Ops-Core error envelope (never http.server's HTML page) for what the standard library refuses itself, and quiet
handling of clients that hang up."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# How long a connection may stay silent (between requests, or in the middle of a request's headers or body) before it
# is answered (a body cut short: 400) or closed. A few seconds: a client on this machine never pauses that long
# mid-request, and a stalled one frees its thread instead of holding it for as long as the client waits.
READ_TIMEOUT_SECONDS = 10.0
# The listen backlog: connections the kernel holds until the server accepts them. socketserver's default of 5 resets
# a burst of simultaneous connections (a browser, the SDK's pool and a bench all at once); the kernel caps it anyway.
LISTEN_BACKLOG = 1024

log = logging.getLogger("opscore_tools.serving")

# A client that went away while it was being answered (or stalled past the read timeout): nobody is left to tell.
_GONE = (ConnectionError, TimeoutError)


class Server(ThreadingHTTPServer):
    """A threading HTTP server with a deep backlog, whose threads never keep the process alive."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, _GONE):
            log.debug("client %s went away: %r", client_address, error)
            return
        super().handle_error(request, client_address)


def error_body(code: str, message: str) -> bytes:
    """The Ops-Core error envelope, with a request id of its own as API Gateway gives its own answers."""
    return json.dumps({"error": {"code": code, "message": message}, "request_id": str(uuid.uuid4())}).encode()


class JsonErrorsHandler(BaseHTTPRequestHandler):
    """A request handler that answers every method through `serve` and every refusal in the error envelope."""

    protocol_version = "HTTP/1.1"
    # The socket's timeout (socketserver sets it from the class): a subclass may set its own.
    timeout = READ_TIMEOUT_SECONDS

    def serve(self) -> None:
        raise NotImplementedError

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        # http.server looks up do_<METHOD> next, and answers a method it does not find with its 501 page: every method
        # goes to `serve` instead, which answers one that no route takes as the API does (no such route).
        setattr(self, f"do_{self.command}", self.serve)
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:  # noqa: ARG002
        """What http.server refuses before a request reaches `serve` (a request line too long, malformed or of an
        unknown version; too many headers), in the envelope: `bad_request` for a 4xx, `internal_error` else."""
        status = HTTPStatus(code)
        text = message or status.phrase
        body = error_body("bad_request" if code < 500 else "internal_error", text)
        self.log_error("code %d, message %s", code, text)
        self.send_response(code, status.phrase)
        self.send_header("Connection", "close")  # what follows on the connection cannot be trusted either
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: requests are logged by each server as it chooses, never to stderr line by line."""
