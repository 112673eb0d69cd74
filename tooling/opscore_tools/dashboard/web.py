"""What the dashboard answers besides the API: its static files under /ui, and /ui/api/logs, the log view's lines.

Both servers use it: `opscore local` beside the API it serves, and `opscore dashboard` in front of a deployed stack.
The browser signs in with an API key it sends as X-API-Key; the static files need none. The log endpoint reads the
`opscore logs` sources (the same filters, the same predicate) and is for admins only: it asks the API whether the
caller's key is an admin's (GET /agents, an admin-only route) before it reads a line, since log lines name every
agent and an agent key must see only its own agent.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from opscore_tools.logs.records import LogLine, LogQuery, UsageError, window
from opscore_tools.logs.sources import LogSource, SourceError

UI_PATH = "/ui"
LOGS_PATH = "/ui/api/logs"
MAX_LOG_LIMIT = 2000
DEFAULT_LOG_LIMIT = 300
VERDICT_SECONDS = 60.0
FOLLOW_SECONDS = 2.0  # how often the log view re-reads in follow mode
STACK_FOLLOW_SECONDS = 15.0  # on a stack each re-read is a Logs Insights query over the window, billed by the scan
# Repeatable filters: the query parameter and the LogQuery field it fills.
LIST_FILTERS = (
    ("agent", "agents"),
    ("session", "sessions"),
    ("task", "tasks"),
    ("workflow", "workflows"),
    ("event", "events"),
    ("error_type", "error_types"),
)
# The browser caches nothing of the app: a new version of the tooling is seen at the next load.
_NO_STORE = {"Cache-Control": "no-store"}
# The page runs only its own scripts and talks only to its own origin.
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


# Whether a key is an admin's: the status the API answered for it on an admin-only route (200, 401 or 403).
AdminCheck = Callable[[str], int]


class Dashboard:
    """Answers /ui, /ui/<file> and /ui/api/logs (`owns` says which paths are its own)."""

    def __init__(
        self,
        log_source: Callable[[], LogSource],
        admin_status: AdminCheck,
        *,
        clock: Callable[[], float] = time.monotonic,
        follow_seconds: float = FOLLOW_SECONDS,
        source_flags: str = "",
    ) -> None:
        self._log_source = log_source
        self._source_flags = source_flags  # what `opscore logs` needs to read the same source: "--stack NAME"
        # Built once and kept: a stack's source finds its log groups (a CloudFormation read) when first asked.
        self._source: LogSource | None = None
        self._source_lock = threading.Lock()
        self._follow_seconds = follow_seconds
        self._admin_status = admin_status
        self._clock = clock
        # The API's verdict on a key, by its SHA-256, for a minute: the log view polls every few seconds, and each
        # check is a request (and a log line) of its own. A revoked key may so read logs up to a minute longer.
        self._verdicts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def owns(path: str) -> bool:
        return path == UI_PATH or path.startswith(UI_PATH + "/")

    def handle(self, method: str, path: str, query: list[tuple[str, str]], headers: Iterable[tuple[str, str]]) -> Reply:
        if method not in {"GET", "HEAD"}:
            return _error(405, "method_not_allowed", f"{method} is not allowed on the dashboard's paths")
        if path == LOGS_PATH:
            key = next((value for name, value in headers if name.lower() == "x-api-key"), "")
            return self._logs(key, query)
        if path == UI_PATH:
            return Reply(308, b"", {"Location": UI_PATH + "/"})
        return static_file(path.removeprefix(UI_PATH + "/") or "index.html")

    def _refusal(self, key: str) -> Reply | None:
        """Why the key may not read the logs (None: it may): missing, unknown, or not an admin's."""
        if not key:
            return _error(401, "unauthorized", "sign in: the log view needs an admin API key (X-API-Key)")
        status = self._checked(key)
        if status == 200:
            return None
        if status == 401:
            return _error(401, "unauthorized", "the API key is not valid")
        if status == 403:
            return _error(403, "forbidden", "the log view is for admin keys: log lines name every agent")
        return _error(502, "bad_gateway", f"the API answered {status} when the key was checked")

    def _checked(self, key: str) -> int:
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            known = self._verdicts.get(digest)
            if known is not None and known[1] > now:
                return known[0]
        status = self._admin_status(key)
        if status in {200, 403}:  # a verdict on the key; anything else (401, an outage) is asked again next time
            with self._lock:
                self._verdicts = {d: v for d, v in self._verdicts.items() if v[1] > now}
                self._verdicts[digest] = (status, now + VERDICT_SECONDS)
        return status

    def _built_source(self) -> LogSource:
        """The log source, built at the first read that can build it (a SourceError is not kept: asked again)."""
        with self._source_lock:
            if self._source is None:
                self._source = self._log_source()
            return self._source

    def _logs(self, key: str, query: list[tuple[str, str]]) -> Reply:
        refused = self._refusal(key)
        if refused is not None:
            return refused
        try:
            log_query = log_query_of(query, datetime.now(UTC))
        except UsageError as error:
            return _error(400, "validation_error", as_parameters(str(error)))
        try:
            source = self._built_source()
            found = source.find(log_query)
        except SourceError as error:
            return _error(503, "logs_unavailable", str(error))
        body = {
            "source": source.describe(),
            "matched": found.matched,
            "notes": list(found.notes),
            "lines": [line_json(line) for line in found.lines],
            "follow_seconds": self._follow_seconds,
            "source_flags": self._source_flags,
        }
        return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json", **_NO_STORE})


def log_query_of(query: list[tuple[str, str]], now: datetime) -> LogQuery:
    """The `opscore logs` filters from the query string: each named as the command's option (`error_type` for
    --error-type); a repeated filter accepts either value; a bad one is a UsageError naming it."""
    known = {name for name, _ in LIST_FILTERS} | {"level", "since", "start", "end", "grep", "limit"}
    unknown = sorted({name for name, _ in query} - known)
    if unknown:
        raise UsageError(f"unknown filter {unknown[0]!r}: use {', '.join(sorted(known))}")
    single = {name: value for name, value in query if value != ""}
    lists = {field: tuple(value for name, value in query if name == param and value) for param, field in LIST_FILTERS}
    begins, ends = window(single.get("since"), single.get("start"), single.get("end"), now)
    limit_text = single.get("limit", str(DEFAULT_LOG_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LOG_LIMIT:
        raise UsageError(f"limit must be a whole number from 1 to {MAX_LOG_LIMIT}, not {limit_text!r}")
    level = single.get("level")
    return LogQuery(
        **lists,
        level=level.upper() if level else None,
        start=begins,
        end=ends,
        grep=single.get("grep"),
        limit=int(limit_text),
    )


def as_parameters(message: str) -> str:
    """A message of `opscore logs` for the URL it came from: its options (--error-type) named as the query string's
    parameters (error_type)."""
    return re.sub(r"--([a-z][a-z-]*)", lambda option: option.group(1).replace("-", "_"), message)


def line_json(line: LogLine) -> dict[str, Any]:
    """A log line for the browser: the record as written, and its time as an instant the browser shows in its zone."""
    time = line.time
    return {"time": time.isoformat() if time else None, "record": line.record}


def static_file(name: str) -> Reply:
    """A file of static/, by its plain name (no folders, nothing hidden): nothing else can be asked for."""
    files = resources.files("opscore_tools.dashboard") / "static"
    if "/" in name or "\\" in name or name.startswith("."):
        return _error(404, "not_found", f"no dashboard file {name!r}")
    found = files / name
    if not found.is_file():
        return _error(404, "not_found", f"no dashboard file {name!r}")
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind == "application/javascript":
        kind += "; charset=utf-8"
    headers = {"Content-Type": kind, "Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", **_NO_STORE}
    return Reply(200, found.read_bytes(), headers)


def _error(status: int, code: str, message: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **_NO_STORE})
