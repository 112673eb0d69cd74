"""How long a request's body is, from its headers, for the two servers of the tooling (`opscore local` and
`opscore dashboard`): both read bodies by Content-Length on kept-alive connections, so a length they cannot trust
must be refused before a byte is read, and the connection closed after the answer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from opscore_tools.serving import error_body


@dataclass
class BodyRefused(Exception):
    """A body the server will not read: the status and the error envelope to answer with."""

    status: int
    code: str
    message: str

    def body(self) -> bytes:
        return error_body(self.code, self.message)


def content_length(headers: Iterable[tuple[str, str]]) -> int:
    """The body's length in bytes (0 when there is none); BodyRefused for a length that is not a whole number, or a
    chunked body (its end is not known before it is read, and what is left of it would be read as the next request)."""
    named = [(name.lower(), value.strip()) for name, value in headers]
    if any(name == "transfer-encoding" for name, _ in named):
        # 411 says what to do; the code is the documented `bad_request`, as for http.server's own 414 and 431.
        message = "send the body with a Content-Length: Transfer-Encoding is refused"
        raise BodyRefused(411, "bad_request", message)
    lengths = {value for name, value in named if name == "content-length"}
    if not lengths:
        return 0
    text = lengths.pop()
    if lengths or not text.isdigit() or not text.isascii():
        raise BodyRefused(400, "bad_request", "Content-Length must be one whole number of bytes")
    return int(text)


def length_or_refuse(request: BaseHTTPRequestHandler) -> int | None:
    """The request's body length; None when it was refused: the refusal is sent and the connection marked to close,
    since what follows on it cannot be told apart from the body."""
    try:
        return content_length(request.headers.items())
    except BodyRefused as refused:
        refuse(request, refused)
        return None


def read_body(request: BaseHTTPRequestHandler, length: int) -> bytes | None:
    """The request's body of `length` bytes; None when it did not all come, because the client closed its side or
    sent nothing for the server's read timeout (a Content-Length longer than the body): a 400 is sent and the
    connection closed, rather than a truncated body handled or a thread held for as long as the client waits."""
    try:
        body = request.rfile.read(length)
    except TimeoutError:
        body = b""
    if len(body) == length:
        return body
    message = f"the body stopped before the {length} bytes its Content-Length declares"
    refuse(request, BodyRefused(400, "bad_request", message))
    return None


def refuse(request: BaseHTTPRequestHandler, refused: BodyRefused) -> None:
    """Answer the refusal and close the connection."""
    body = refused.body()
    request.close_connection = True
    request.send_response(refused.status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(body)))
    request.send_header("Connection", "close")
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)
