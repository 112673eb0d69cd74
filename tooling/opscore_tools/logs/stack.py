"""A deployed stack's log groups as a source of log lines: CloudWatch Logs Insights for what was written, then
FilterLogEvents polled for --follow.

The filters compile into one Insights query (`insights_query`) and, for --follow, into a filter pattern on the JSON
fields (`filter_pattern`); what a pattern cannot say (--grep, a window's end, a value it cannot quote) is checked on
each line with the same predicate the local file uses, which stays the reference for what a filter means.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from opscore_tools.logs.records import LogLine, LogQuery, parse_line
from opscore_tools.logs.sources import Found, SourceError

RESULT_CAP = 10_000  # the most rows one Logs Insights query returns
MAX_LOG_GROUPS = 50  # the most log groups one StartQuery takes
DEFAULT_WINDOW = timedelta(hours=1)
QUERY_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 1.0
FOLLOW_POLL_SECONDS = 2.0
_RUNNING = {"Scheduled", "Running"}

Progress = Callable[[str], None]


def insights_query(query: LogQuery) -> str:
    """The Logs Insights query text of the filters (the window is StartQuery's startTime/endTime, not text)."""
    parts = ["fields @timestamp, @message", "filter ispresent(level)"]
    for name, values in query.id_filters():
        parts.append(f"filter {name} {_insights_match(values)}")
    if query.levels:
        parts.append(f"filter level {_insights_match(query.levels)}")
    if query.grep is not None:
        parts.append(f"filter message like /{query.grep.replace('/', '\\/')}/")
    parts += ["sort @timestamp desc", f"limit {query.limit}"]
    return "\n| ".join(parts)


def _insights_match(values: tuple[str, ...]) -> str:
    if len(values) == 1:
        return f"= {_quoted(values[0])}"
    return "in [" + ", ".join(_quoted(value) for value in values) + "]"


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def filter_pattern(query: LogQuery) -> str:
    """A FilterLogEvents pattern on the JSON fields for what it can express exactly; '' when it can say nothing."""
    clauses = []
    for name, values in [*query.id_filters(), *([("level", query.levels)] if query.levels else [])]:
        if any('"' in value or "\\" in value or "*" in value for value in values):
            continue  # not quotable in a pattern: left to the predicate on each line
        clauses.append("(" + " || ".join(f'$.{name} = "{value}"' for value in values) + ")")
    return "{ " + " && ".join(clauses) + " }" if clauses else ""


def log_groups_of_stack(cloudformation: Any, stack: str) -> list[str]:
    """The stack's log groups: each function's /aws/lambda/<name>, and every declared AWS::Logs::LogGroup."""
    from botocore.exceptions import ClientError

    groups: list[str] = []
    try:
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
            for resource in page["StackResourceSummaries"]:
                physical = resource.get("PhysicalResourceId")
                if not physical:
                    continue
                if resource["ResourceType"] == "AWS::Lambda::Function":
                    groups.append(f"/aws/lambda/{physical}")
                elif resource["ResourceType"] == "AWS::Logs::LogGroup":
                    groups.append(physical)
    except ClientError as error:
        raise SourceError(f"stack {stack}: {error.response['Error'].get('Message', 'not found')}") from None
    unique = sorted(set(groups))
    if not unique:
        raise SourceError(f"stack {stack} has no functions or log groups; is it an Ops-Core stack?")
    return unique


class StackLogs:
    """The log groups of a deployed stack, read with the operator's own AWS credentials."""

    def __init__(
        self,
        stack: str,
        logs: Any,
        cloudformation: Any,
        *,
        timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
        progress: Progress | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self._logs = logs
        self._cloudformation = cloudformation
        self._timeout = timeout_seconds
        self._progress = progress or (lambda _: None)
        self._now, self._sleep, self._monotonic = now, sleep, monotonic
        self._groups: list[str] | None = None
        self._searched_until: datetime | None = None  # where a find's window ended: a --follow goes on from there

    @property
    def groups(self) -> list[str]:
        if self._groups is None:
            self._groups = log_groups_of_stack(self._cloudformation, self.stack)
        return self._groups

    def describe(self) -> str:
        return f"stack {self.stack} ({len(self.groups)} log groups)"

    def find(self, query: LogQuery) -> Found:
        if query.limit > RESULT_CAP:
            raise SourceError(f"Logs Insights returns at most {RESULT_CAP:,} lines: use --limit {RESULT_CAP} or less")
        end = query.end or self._now()
        self._searched_until = end  # a --follow after this goes on from here, not from the window's start again
        start = query.start or end - DEFAULT_WINDOW
        notes = [] if query.start else [f"no --since or --start: the last {_hours(DEFAULT_WINDOW)} searched"]
        groups = self.groups
        if len(groups) > MAX_LOG_GROUPS:
            notes.append(f"the stack has {len(groups)} log groups; only the first {MAX_LOG_GROUPS} were searched")
            groups = groups[:MAX_LOG_GROUPS]
        query_id = self._start(groups, start, end, insights_query(query))
        answer = self._wait(query_id)
        lines = [line for row in reversed(answer.get("results", [])) if (line := _row_line(row)) is not None]
        matched = int(answer.get("statistics", {}).get("recordsMatched", len(lines)))
        if matched > len(lines):
            cap = f" (the --limit; Logs Insights returns {RESULT_CAP:,} at most)" if len(lines) >= query.limit else ""
            notes.append(
                f"{matched:,} lines matched; showing the newest {len(lines):,}{cap}: narrow the window or the filters"
            )
        return Found(lines, matched, tuple(notes))

    def _start(self, groups: list[str], start: datetime, end: datetime, text: str) -> str:
        from botocore.exceptions import ClientError

        try:
            started = self._logs.start_query(
                logGroupNames=groups,
                startTime=int(start.timestamp()),
                endTime=int(end.timestamp()) + 1,
                queryString=text,
                limit=RESULT_CAP,
            )
        except ClientError as error:
            raise SourceError(f"Logs Insights refused the query: {_message(error)}") from None
        return str(started["queryId"])

    def _wait(self, query_id: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        began = self._monotonic()
        while True:
            try:
                answer: dict[str, Any] = self._logs.get_query_results(queryId=query_id)
            except ClientError as error:
                raise SourceError(f"Logs Insights: {_message(error)}") from None
            status = answer.get("status")
            if status == "Complete":
                return answer
            if status not in _RUNNING:
                raise SourceError(f"the Logs Insights query ended {status}")
            elapsed = self._monotonic() - began
            if elapsed >= self._timeout:
                self._stop(query_id)
                raise SourceError(f"the Logs Insights query took longer than {self._timeout:g}s (--timeout); stopped")
            scanned = answer.get("statistics", {}).get("recordsScanned", 0)
            self._progress(f"Logs Insights query {status.lower()}: {elapsed:.0f}s, {scanned:,.0f} records scanned")
            self._sleep(POLL_SECONDS)

    def _stop(self, query_id: str) -> None:
        from botocore.exceptions import ClientError

        with contextlib.suppress(ClientError):  # it may have ended meanwhile
            self._logs.stop_query(queryId=query_id)

    def follow(self, query: LogQuery) -> Iterator[LogLine]:
        """FilterLogEvents on every group, from where the search before it ended (else the window's start, or now),
        every few seconds; each line once."""
        since_ms = int((self._searched_until or query.start or self._now()).timestamp() * 1000)
        pattern = filter_pattern(query)
        seen: set[str] = set()
        while True:
            events = sorted(
                (event for group in self.groups for event in self._events(group, since_ms, pattern)),
                key=lambda event: (event["timestamp"], event["eventId"]),
            )
            for event in events:
                if event["eventId"] in seen:
                    continue
                seen.add(event["eventId"])
                line = parse_line(event.get("message", ""))
                if line is not None and query.matches(line):
                    yield line
            if events:
                since_ms = events[-1]["timestamp"]  # the same millisecond again: `seen` drops the repeats
            self._sleep(FOLLOW_POLL_SECONDS)

    def _events(self, group: str, since_ms: int, pattern: str) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import ClientError

        arguments: dict[str, Any] = {"logGroupName": group, "startTime": since_ms}
        if pattern:
            arguments["filterPattern"] = pattern
        try:
            for page in self._logs.get_paginator("filter_log_events").paginate(**arguments):
                yield from page.get("events", [])
        except ClientError as error:
            if error.response["Error"].get("Code") == "ResourceNotFoundException":
                return  # a function never invoked has no log group yet
            raise SourceError(f"{group}: {_message(error)}") from None


def stack_logs(stack: str, region: str | None, *, timeout_seconds: float, progress: Progress | None) -> StackLogs:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session(region_name=region)
        return StackLogs(
            stack,
            session.client("logs"),
            session.client("cloudformation"),
            timeout_seconds=timeout_seconds,
            progress=progress,
        )
    except BotoCoreError as error:
        raise SourceError(str(error)) from None


def _row_line(row: list[dict[str, str]]) -> LogLine | None:
    fields = {cell["field"]: cell.get("value", "") for cell in row}
    return parse_line(fields.get("@message", ""))


def _message(error: Any) -> str:
    return str(error.response["Error"].get("Message") or error.response["Error"].get("Code"))


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return "hour" if hours == 1 else f"{hours:g} hours"
