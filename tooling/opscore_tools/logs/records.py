"""Log lines, the filters `opscore logs` takes, and the one predicate that decides whether a line matches.

A log line is a JSON object with a `level` (what Powertools' Logger and the local runtime write). Anything else in a
log file or a log group (an EMF metrics blob, Lambda's START/END/REPORT lines, a line cut short) is not a log line:
every source skips it, with or without --json, so that --json output is always one JSON object a line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LIMIT = 1000

# The record field each id filter reads, in the order the query names them.
ID_FILTERS = (
    ("agents", "agent_id"),
    ("sessions", "session_id"),
    ("tasks", "task_id"),
    ("workflows", "workflow_id"),
    ("events", "event"),
    ("error_types", "error_type"),
)

_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class UsageError(ValueError):
    """A filter that cannot be understood: the command exits 2 and says why."""


@dataclass(frozen=True)
class LogLine:
    """One log line: the text as written (what --json prints) and the object it holds."""

    raw: str
    record: dict[str, Any]

    @property
    def time(self) -> datetime | None:
        return record_time(self.record)

    def get(self, name: str) -> str | None:
        value = self.record.get(name)
        return None if value is None else str(value)


@dataclass(frozen=True)
class LogQuery:
    """Every filter of `opscore logs`. Filters combine with AND; the values of one repeated filter with OR."""

    agents: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    level: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    grep: str | None = None
    limit: int = DEFAULT_LIMIT
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.level is not None and self.level not in LEVELS:
            raise UsageError(f"--level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        if self.limit < 1:
            raise UsageError("--limit must be at least 1")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise UsageError("the window's start must be before its end")
        if self.grep is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.grep))
            except re.error as error:
                raise UsageError(f"--grep is not a valid regular expression: {error}") from None

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels --level lets through (that level and above), or () when any level goes."""
        return LEVELS[LEVELS.index(self.level) :] if self.level else ()

    def id_filters(self) -> list[tuple[str, tuple[str, ...]]]:
        """(record field, accepted values) of each id filter given."""
        return [(name, getattr(self, attribute)) for attribute, name in ID_FILTERS if getattr(self, attribute)]

    def matches(self, line: LogLine) -> bool:
        """The semantics every source shares (the stack's Insights query and filter patterns compile the same)."""
        record = line.record
        if any(line.get(name) not in values for name, values in self.id_filters()):
            return False
        if self.level is not None and str(record.get("level", "")).upper() not in self.levels:
            return False
        if self._pattern is not None and not self._pattern.search(str(record.get("message", ""))):
            return False
        return self.in_window(line.time)

    def in_window(self, time: datetime | None) -> bool:
        if self.start is None and self.end is None:
            return True
        if time is None:
            return False
        return (self.start is None or time >= self.start) and (self.end is None or time < self.end)


def parse_line(raw: str) -> LogLine | None:
    """The log line `raw` holds, or None when it is not one (see the module's doc)."""
    text = raw.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("level"), str):
        return None
    return LogLine(text, record)


def record_time(record: dict[str, Any]) -> datetime | None:
    value = record.get("timestamp")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_instant(text: str, option: str) -> datetime:
    """An RFC 3339 time (`2026-12-01T10:00:00Z`, `2026-12-01T11:00:00+01:00`); the zone is required."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} must be an RFC 3339 time like 2026-12-01T10:00:00Z, not {text!r}") from None
    if parsed.tzinfo is None:
        raise UsageError(f"{option} needs a zone (Z or +hh:mm): {text!r}")
    return parsed


def parse_since(text: str, now: datetime) -> datetime:
    """The start of a window reaching back from `now`: 30s, 15m, 2h, 1d, 1w."""
    found = _SINCE.match(text)
    if found is None:
        raise UsageError(f"--since takes an amount and a unit (s, m, h, d, w) like 15m, 2h or 1d, not {text!r}")
    return now - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def window(
    since: str | None, start: str | None, end: str | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """(start, end) from --since or --start/--end; --since cannot be combined with --start."""
    if since is not None and start is not None:
        raise UsageError("give --since or --start, not both")
    begins = parse_since(since, now) if since is not None else None
    if start is not None:
        begins = parse_instant(start, "--start")
    ends = parse_instant(end, "--end") if end is not None else None
    return begins, ends
