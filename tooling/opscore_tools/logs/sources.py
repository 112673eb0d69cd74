"""What every source of log lines gives `opscore logs`: the newest matching lines, and new ones as they come."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from opscore_tools.logs.records import LogLine, LogQuery


class SourceError(Exception):
    """The source cannot be read (no log file, no such stack, a failed query): the command exits 1 and says why."""


@dataclass(frozen=True)
class Found:
    """The newest `limit` matching lines, oldest first; `matched` counts every match (None when unknown)."""

    lines: list[LogLine]
    matched: int | None
    notes: tuple[str, ...] = ()


class LogSource(Protocol):
    def describe(self) -> str:
        """What is read, for messages: a file's path, a stack and its log groups."""
        ...

    def find(self, query: LogQuery) -> Found: ...

    def follow(self, query: LogQuery) -> Iterator[LogLine]:
        """Lines written after `find` read, as they are written; runs until interrupted (Ctrl-C)."""
        ...
