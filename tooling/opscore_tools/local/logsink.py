"""A JSON-lines log file that functions write to, as Lambda's stdout goes to CloudWatch Logs."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class JsonLinesSink(io.TextIOBase):
    """A text stream that writes whole lines atomically; any line that is not a JSON object is wrapped in one."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._pending = threading.local()

    def write(self, text: str) -> int:
        buffered = getattr(self._pending, "text", "") + text
        *lines, rest = buffered.split("\n")
        self._pending.text = rest
        for line in lines:
            if line.strip():
                self._write_line(line)
        return len(text)

    def record(self, level: str, message: str, event: str, correlation_id: str | None = None, **fields: Any) -> None:
        """A log line of the local runtime itself (a request served, its start and stop), with the base fields every
        line has (docs/logging.md): the runtime stands where API Gateway and Lambda's own lines would."""
        entry = {
            "level": level,
            "location": "opscore local",
            "message": message,
            "timestamp": _now(),
            "service": "opscore-local",
            "function_name": "opscore-local",
            "correlation_id": correlation_id,
            "cold_start": False,
            "event": event,
            **fields,
        }
        self._write_line(json.dumps(entry))

    def _write_line(self, line: str) -> None:
        try:
            is_object = isinstance(json.loads(line), dict)
        except ValueError:
            is_object = False
        if not is_object:  # a print, say: kept as a line of its own, with the base fields
            line = json.dumps(
                {
                    "level": "INFO",
                    "message": line,
                    "timestamp": _now(),
                    "service": "stdout",
                    "function_name": "opscore-local",
                    "correlation_id": None,
                    "cold_start": False,
                    "event": "stdout",
                }
            )
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")

    def flush(self) -> None:
        # Logging's shutdown flushes every handler at exit, after the runtime has closed its log.
        with self._lock:
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        super().close()  # flushes first
        with self._lock:
            self._file.close()


def _now() -> str:
    """RFC 3339 with milliseconds and an offset, as the functions' lines are stamped."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
