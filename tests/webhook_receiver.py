"""A webhook receiver on loopback, as an agent would run one: checks each delivery's signature, answers by script."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opscore.dispatch.delivery.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

SECRET = "loopback-webhook-secret"

# A delivered task -> (status, answer body): JSON, or bytes sent as they are.
Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any] | bytes | None]]


@dataclass
class Delivery:
    task: dict[str, Any]
    signed: bool


@dataclass
class Receiver:
    answer: Answer
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise AssertionError(f"expected {count} deliveries, got {len(self.deliveries)}")
            return list(self.deliveries)


@contextmanager
def webhook_receiver(answer: Answer) -> Iterator[Receiver]:
    receiver = Receiver(answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signed = verify_signature(
                SECRET, self.headers.get(TIMESTAMP_HEADER, ""), body, self.headers.get(SIGNATURE_HEADER, "")
            )
            task = json.loads(body)
            status, reply = receiver.answer(task) if signed else (401, None)
            payload = reply if isinstance(reply, bytes) else json.dumps(reply).encode() if reply is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            with receiver.arrived:
                receiver.deliveries.append(Delivery(task, signed))
                receiver.arrived.notify_all()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/tasks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
