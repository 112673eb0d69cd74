"""`opscore logs`: what a log line is, what each filter keeps, the time window, the table, and the local file."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from opscore_tools.logs.local_file import LocalFile, default_log_file
from opscore_tools.logs.records import LogLine, LogQuery, UsageError, parse_instant, parse_line, parse_since, window
from opscore_tools.logs.render import Columns, local_time, print_table, row
from opscore_tools.logs.sources import SourceError

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def a_line(**fields: Any) -> LogLine:
    record = {"level": "INFO", "message": "m", "timestamp": "2026-12-01T09:59:00.000+00:00", "service": "opscore"}
    record.update(fields)
    line = parse_line(json.dumps(record))
    assert line is not None
    return line


# -- what a log line is


@pytest.mark.parametrize(
    "raw",
    [
        "START RequestId: 1 Version: $LATEST",
        '{"_aws": {"Timestamp": 1}, "TasksLeased": 1}',  # an EMF metrics blob: no level
        '{"level": "INFO", "message": "cut sh',
        "[1, 2]",
        "",
        '{"level": 3}',
    ],
)
def test_what_is_not_a_log_line_is_skipped(raw: str) -> None:
    assert parse_line(raw) is None


def test_a_log_line_keeps_its_text_as_written() -> None:
    raw = '{"level":"INFO","message":"hi","timestamp":"2026-12-01T09:00:00.123+00:00","agent_id":"a"}'
    line = parse_line(raw + "\n")
    assert line is not None
    assert line.raw == raw
    assert line.time == datetime(2026, 12, 1, 9, 0, 0, 123000, tzinfo=UTC)
    assert line.get("agent_id") == "a"
    assert line.get("session_id") is None


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-12-01T09:00:00Z", datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ("2026-12-01T10:00:00+01:00", datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ("2026-12-01T09:00:00", datetime(2026, 12, 1, 9, tzinfo=UTC)),  # no zone: read as UTC
        ("yesterday", None),
        (None, None),
    ],
)
def test_a_lines_time(timestamp: str | None, expected: datetime | None) -> None:
    assert a_line(timestamp=timestamp).time == expected


# -- filters


@pytest.mark.parametrize(
    ("query", "line", "kept"),
    [
        (LogQuery(agents=("a",)), a_line(agent_id="a"), True),
        (LogQuery(agents=("a",)), a_line(agent_id="b"), False),
        (LogQuery(agents=("a",)), a_line(), False),
        (LogQuery(agents=("a", "b")), a_line(agent_id="b"), True),
        (LogQuery(sessions=("s",)), a_line(session_id="s"), True),
        (LogQuery(tasks=("s-001",)), a_line(task_id="s-000"), False),
        (LogQuery(workflows=("triage",)), a_line(workflow_id="triage"), True),
        (LogQuery(events=("task_failed",)), a_line(event="task_failed"), True),
        (LogQuery(events=("task_failed",)), a_line(event="task_succeeded"), False),
        (LogQuery(error_types=("timeout",)), a_line(error_type="timeout"), True),
        (LogQuery(error_types=("timeout",)), a_line(error_type="agent_error"), False),
        (LogQuery(agents=("a",), events=("task_failed",)), a_line(agent_id="a", event="task_leased"), False),
        (LogQuery(agents=("a",), events=("task_failed",)), a_line(agent_id="a", event="task_failed"), True),
    ],
)
def test_id_filters_combine_with_and_their_values_with_or(query: LogQuery, line: LogLine, kept: bool) -> None:
    assert query.matches(line) is kept


@pytest.mark.parametrize(
    ("minimum", "level", "kept"),
    [
        ("WARNING", "INFO", False),
        ("WARNING", "WARNING", True),
        ("WARNING", "ERROR", True),
        ("WARNING", "CRITICAL", True),
        ("DEBUG", "DEBUG", True),
        ("ERROR", "warning", False),
        ("ERROR", "error", True),  # levels compare case-blind
        ("INFO", "TRACE", False),  # not a level Ops-Core writes: never "at least" anything
    ],
)
def test_level_keeps_that_level_and_above(minimum: str, level: str, kept: bool) -> None:
    assert LogQuery(level=minimum).matches(a_line(level=level)) is kept


def test_levels_are_ordered() -> None:
    assert LogQuery(level="WARNING").levels == ("WARNING", "ERROR", "CRITICAL")
    assert LogQuery().levels == ()


def test_grep_is_a_regular_expression_searched_in_the_message() -> None:
    query = LogQuery(grep=r"lease (expired|lost)")
    assert query.matches(a_line(message="the lease expired at 10:00"))
    assert not query.matches(a_line(message="lease renewed"))
    assert not query.matches(a_line(message="m", detail="lease lost"))  # the message only
    assert LogQuery(grep="(?i)LEASE").matches(a_line(message="lease"))


def test_the_window_includes_its_start_and_excludes_its_end() -> None:
    query = LogQuery(start=NOW - timedelta(minutes=5), end=NOW)
    assert query.matches(a_line(timestamp="2026-12-01T09:55:00+00:00"))
    assert query.matches(a_line(timestamp="2026-12-01T10:59:59+01:00"))
    assert not query.matches(a_line(timestamp="2026-12-01T10:00:00Z"))
    assert not query.matches(a_line(timestamp="2026-12-01T09:54:59.999Z"))
    assert not query.matches(a_line(timestamp="not a time")), "a line of unknown time is outside any window"
    assert LogQuery().matches(a_line(timestamp="not a time"))


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"level": "LOUD"}, "--level must be one of"),
        ({"limit": 0}, "--limit"),
        ({"grep": "("}, "--grep"),
        ({"start": NOW, "end": NOW}, "before its end"),
    ],
)
def test_a_query_that_makes_no_sense_is_a_usage_error(arguments: dict[str, Any], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        LogQuery(**arguments)


# -- time windows


@pytest.mark.parametrize(
    ("since", "start"),
    [
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("30s", NOW - timedelta(seconds=30)),
        (" 1w ", NOW - timedelta(weeks=1)),
    ],
)
def test_since_reaches_back_from_now(since: str, start: datetime) -> None:
    assert parse_since(since, NOW) == start


@pytest.mark.parametrize("since", ["15", "m", "1.5h", "-2h", "2 hours", "1y"])
def test_since_needs_an_amount_and_a_unit(since: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        parse_since(since, NOW)


def test_start_and_end_are_rfc3339_with_a_zone() -> None:
    assert parse_instant("2026-12-01T11:00:00+01:00", "--start") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_instant("2026-12-01T10:00:00.5Z", "--end") == datetime(2026, 12, 1, 10, 0, 0, 500000, tzinfo=UTC)
    with pytest.raises(UsageError, match="needs a zone"):
        parse_instant("2026-12-01T10:00:00", "--start")
    with pytest.raises(UsageError, match="RFC 3339"):
        parse_instant("10am", "--end")


def test_window_from_the_options() -> None:
    assert window(None, None, None, NOW) == (None, None)
    assert window("1h", None, None, NOW) == (NOW - timedelta(hours=1), None)
    assert window("1h", None, "2026-12-01T09:30:00Z", NOW) == (
        NOW - timedelta(hours=1),
        datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
    )
    assert window(None, "2026-12-01T09:00:00Z", None, NOW) == (datetime(2026, 12, 1, 9, tzinfo=UTC), None)
    with pytest.raises(UsageError, match="not both"):
        window("1h", "2026-12-01T09:00:00Z", None, NOW)


# -- the table


def rendered(lines: list[LogLine], *, terminal: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, color_system="standard" if terminal else None, width=60)
    print_table(console, lines, Columns.fitting(lines), zone=timezone(timedelta(hours=1), "CET"))
    return out.getvalue()


def test_the_table_has_one_unwrapped_row_a_line_and_no_colour_off_a_terminal() -> None:
    failed = a_line(
        level="ERROR",
        agent_id="research-agent",
        event="task_failed",
        message="task failed",
        session_id="s1",
        task_id="s1-000",
        workflow_id="triage",
        attempt=2,
        error_type="timeout",
        error_message="no result within 300s",
    )
    text = rendered([a_line(message="started"), failed], terminal=False)
    header, first, second = text.splitlines()
    assert header.split() == ["TIME", "LEVEL", "AGENT", "EVENT", "MESSAGE", "IDS"]
    assert "\x1b[" not in text
    assert first.startswith("2026-12-01 10:59:00.000 CET  INFO")
    assert second.split() == [
        *["2026-12-01", "10:59:00.000", "CET", "ERROR", "research-agent", "task_failed"],
        *["task", "failed", "[timeout:", "no", "result", "within", "300s]"],
        *["session=s1", "task=s1-000", "workflow=triage", "attempt=2"],
    ]
    assert len(second) > 60, "rows are not wrapped to the console's width"


def test_colour_on_a_terminal() -> None:
    text = rendered([a_line(level="ERROR", message="boom")], terminal=True)
    assert "\x1b[" in text


def test_columns_line_up_on_the_longest_agent_and_event() -> None:
    lines = [a_line(agent_id="a", event="request"), a_line(agent_id="a-much-longer-agent", event="x")]
    first, second = rendered(lines, terminal=False).splitlines()[1:]
    assert first.index("request") == second.index("x")


def test_a_request_line_shows_its_request_and_a_multiline_message_stays_on_one_row() -> None:
    request = a_line(message="request", method="POST", path="/v1/opscore/keys", status=201)
    assert "request POST /v1/opscore/keys 201" in row(request, Columns()).plain
    assert "\n" not in row(a_line(message="one\ntwo"), Columns()).plain


def test_local_time_names_the_zone() -> None:
    line = a_line(timestamp="2026-12-01T09:00:00.250Z")
    assert local_time(line, timezone(timedelta(hours=-5), "EST")) == "2026-12-01 04:00:00.250 EST"
    assert local_time(line, timezone(timedelta(hours=2))) == "2026-12-01 11:00:00.250 UTC+02:00"
    assert local_time(a_line(timestamp="whenever"), UTC) == "whenever"


# -- the local file


def write(path: Path, *records: dict[str, Any] | str) -> None:
    with path.open("a", encoding="utf-8") as file:
        for record in records:
            file.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def test_the_newest_matching_lines_come_oldest_first_and_every_match_is_counted(tmp_path: Path) -> None:
    log = tmp_path / "local.jsonl"
    write(log, *[{"level": "INFO", "message": f"n{n}", "agent_id": "a" if n % 2 else "b"} for n in range(10)])
    write(log, "not json", '{"_aws": {}}')
    found = LocalFile(log).find(LogQuery(agents=("a",), limit=3))
    assert [line.get("message") for line in found.lines] == ["n5", "n7", "n9"]
    assert found.matched == 5
    assert found.notes == ("5 lines matched; showing the newest 3 (--limit)",)
    assert LocalFile(log).find(LogQuery(agents=("a",))).notes == ()


def test_follow_yields_only_new_whole_matching_lines(tmp_path: Path) -> None:
    log = tmp_path / "local.jsonl"
    write(log, {"level": "INFO", "message": "old", "agent_id": "a"})
    source = LocalFile(log, sleep=lambda _: None)
    query = LogQuery(agents=("a",))
    assert [line.get("message") for line in source.find(query).lines] == ["old"]
    following = source.follow(query)
    write(log, {"level": "INFO", "message": "other", "agent_id": "b"}, "garbage")
    with log.open("a") as file:
        file.write('{"level": "INFO", "message": "new", "agent_id": "a"}\n{"level": "INFO", "mess')
    assert next(following).get("message") == "new"
    with log.open("a") as file:
        file.write('age": "rest", "agent_id": "a"}\n')
    assert next(following).get("message") == "rest"


def test_follow_reads_a_truncated_file_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "local.jsonl"
    write(log, *[{"level": "INFO", "message": f"old {n}"} for n in range(5)])
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:  # while a line was half written, the file was truncated and written again
            log.write_text('{"level": "INFO", "message": "after truncation"}\n')
        if len(polls) > 5:
            raise AssertionError("follow never read the truncated file's line")

    source = LocalFile(log, sleep=sleep)
    source.find(LogQuery())
    with log.open("a") as file:
        file.write('{"level": "INFO", "mess')
    assert next(source.follow(LogQuery())).get("message") == "after truncation"


def test_the_default_file_is_the_newest_under_opscore_logs(tmp_path: Path) -> None:
    import os

    logs = tmp_path / ".opscore" / "logs"
    logs.mkdir(parents=True)
    older, newer = logs / "local-1.jsonl", logs / "local-2.jsonl"
    write(older, {"level": "INFO", "message": "x"})
    write(newer, {"level": "INFO", "message": "y"})
    os.utime(older, (2_000_000_000, 2_000_000_000))
    os.utime(newer, (1_000_000_000, 1_000_000_000))
    assert default_log_file(tmp_path) == older


def test_no_log_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no log file under .*\.opscore/logs.*opscore local.*--file"):
        default_log_file(tmp_path)
    with pytest.raises(SourceError, match="cannot read"):
        LocalFile(tmp_path / "missing.jsonl").find(LogQuery())
