"""The local runtime's JSON-lines log file as a source of log lines."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from opscore_tools.logs.records import LogLine, LogQuery, parse_line
from opscore_tools.logs.sources import Found, SourceError

LOGS_DIR = Path(".opscore") / "logs"
FOLLOW_POLL_SECONDS = 0.2


def default_log_file(cwd: Path | None = None) -> Path:
    """The running local runtime's log file, else the newest file under .opscore/logs."""
    from opscore_tools.target import checkout_root, running_runtime

    base = checkout_root(cwd)
    record = running_runtime(base)
    if record is not None and record.log_file and Path(record.log_file).is_file():
        return Path(record.log_file)
    candidates = [path for path in (base / LOGS_DIR).glob("*.jsonl") if path.is_file()]
    if not candidates:
        raise SourceError(
            f"no log file under {base / LOGS_DIR}: start `opscore local` (or `make run`) from this checkout, "
            "or name a file with --file"
        )
    return max(candidates, key=lambda path: (path.stat().st_mtime, path.name))


class LocalFile:
    """A JSON-lines file as the local runtime writes it: read whole, then followed as it grows."""

    def __init__(
        self, path: Path, *, poll_seconds: float = FOLLOW_POLL_SECONDS, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.path = path
        self._offset = 0
        self._poll_seconds = poll_seconds
        self._sleep = sleep

    def describe(self) -> str:
        return str(self.path)

    def find(self, query: LogQuery) -> Found:
        newest: deque[LogLine] = deque(maxlen=query.limit)
        matched = 0
        try:
            with self.path.open("rb") as file:
                for raw in file:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written: follow reads it when it is whole
                    self._offset += len(raw)
                    line = parse_line(raw.decode("utf-8", errors="replace"))
                    if line is not None and query.matches(line):
                        matched += 1
                        newest.append(line)
        except OSError as error:
            raise SourceError(f"cannot read {self.path}: {error.strerror}") from None
        notes = (
            ()
            if matched <= query.limit
            else (f"{matched:,} lines matched; showing the newest {query.limit:,} (--limit)",)
        )
        return Found(list(newest), matched, notes)

    def follow(self, query: LogQuery) -> Iterator[LogLine]:
        partial = b""
        while True:
            restarted, chunk = self._read_more()
            if restarted:
                partial = b""  # what was pending belonged to the file before it was truncated
            if not chunk:
                self._sleep(self._poll_seconds)
                continue
            *whole, partial = (partial + chunk).split(b"\n")
            for raw in whole:
                line = parse_line(raw.decode("utf-8", errors="replace"))
                if line is not None and query.matches(line):
                    yield line

    def _read_more(self) -> tuple[bool, bytes]:
        """(whether the file was truncated and is read again from its start, what was written since last read)."""
        restarted = False
        try:
            with self.path.open("rb") as file:
                file.seek(0, 2)
                if file.tell() < self._offset:
                    self._offset, restarted = 0, True
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return False, b""
        except OSError as error:
            raise SourceError(f"cannot read {self.path}: {error.strerror}") from None
        self._offset += len(chunk)
        return restarted, chunk
