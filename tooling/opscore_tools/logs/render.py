"""Log lines as a table of one row a line (time in local time with its zone, level, agent, event, message, ids), or
as the raw JSON lines. Rows never wrap, so `grep` and `less -S` work on the output; colour only on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import tzinfo

from rich.console import Console
from rich.text import Text

from opscore_tools.logs.records import LogLine

LEVEL_STYLES = {"DEBUG": "dim", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold white on red"}
ID_FIELDS = (("session", "session_id"), ("task", "task_id"), ("workflow", "workflow_id"), ("attempt", "attempt"))
TIME_WIDTH = 27
LEVEL_WIDTH = 8
MIN_WIDTHS = (8, 12)  # agent, event
MAX_WIDTHS = (24, 24)  # beyond these a column's longest values push their rows on


@dataclass(frozen=True)
class Columns:
    agent: int = MIN_WIDTHS[0]
    event: int = MIN_WIDTHS[1]

    @classmethod
    def fitting(cls, lines: Iterable[LogLine]) -> Columns:
        agent, event = MIN_WIDTHS
        for line in lines:
            agent = max(agent, len(line.get("agent_id") or "-"))
            event = max(event, len(line.get("event") or "-"))
        return cls(min(agent, MAX_WIDTHS[0]), min(event, MAX_WIDTHS[1]))


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        # rich exits 1 when the reader goes away; `opscore logs` treats that as it treats --json's (see the command).
        self.quiet = True
        raise BrokenPipeError


def stdout_console() -> Console:
    """stdout, coloured only when it is a terminal (and NO_COLOR is unset); never wrapped."""
    return _Stdout(file=sys.stdout, highlight=False, soft_wrap=True, emoji=False)


def local_time(line: LogLine, zone: tzinfo | None = None) -> str:
    time = line.time
    if time is None:
        return (line.get("timestamp") or "-")[:TIME_WIDTH]
    shown = time.astimezone(zone)
    name = shown.tzname() or shown.strftime("%z")
    return f"{shown:%Y-%m-%d %H:%M:%S}.{shown.microsecond // 1000:03d} {name}"


def header(columns: Columns) -> Text:
    cells = ["TIME".ljust(TIME_WIDTH), "LEVEL".ljust(LEVEL_WIDTH), "AGENT".ljust(columns.agent)]
    cells += ["EVENT".ljust(columns.event), "MESSAGE", "IDS"]
    return Text("  ".join(cells), style="bold")


def row(line: LogLine, columns: Columns, zone: tzinfo | None = None) -> Text:
    level = (line.get("level") or "-").upper()
    text = Text()
    text.append(local_time(line, zone).ljust(TIME_WIDTH) + "  ", style="dim")
    text.append(level.ljust(LEVEL_WIDTH), style=LEVEL_STYLES.get(level, ""))
    text.append("  " + _cell(line.get("agent_id"), columns.agent) + "  ", style="cyan")
    text.append(_cell(line.get("event"), columns.event) + "  ", style="magenta")
    text.append(_one_line(message(line)))
    ids = "  ".join(f"{label}={value}" for label, name in ID_FIELDS if (value := line.get(name)) is not None)
    if ids:
        text.append("  " + ids, style="dim")
    return text


def message(line: LogLine) -> str:
    """The message, with the request (the local runtime's request lines) and the error, when the line has them."""
    text = line.get("message") or ""
    method, path, status = line.get("method"), line.get("path"), line.get("status")
    if method and path and status:
        text += f" {method} {path} {status}"
    error_type, error_message = line.get("error_type"), line.get("error_message")
    if error_type or error_message:
        text += " [" + ": ".join(part for part in (error_type, error_message) if part) + "]"
    return text


def print_table(console: Console, lines: list[LogLine], columns: Columns, zone: tzinfo | None = None) -> None:
    console.print(header(columns), soft_wrap=True)
    for line in lines:
        console.print(row(line, columns, zone), soft_wrap=True)


def print_json(lines: Iterable[LogLine]) -> None:
    for line in lines:
        sys.stdout.write(line.raw + "\n")
    sys.stdout.flush()


def _cell(value: str | None, width: int) -> str:
    return (value or "-").ljust(width)  # a longer value pushes the row on rather than losing its end


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text
