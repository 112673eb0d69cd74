"""A deployed stack's log groups as a source of log lines: CloudWatch Logs Insights for what was written, then
FilterLogEvents polled on each log group for --follow.

The filters compile into one Insights query (`insights_query`) and, for --follow, into a filter pattern on the JSON
fields (`filter_pattern`). Both only narrow what CloudWatch sends: every line either returns is checked again with the
predicate the local file uses (`LogQuery.matches`), which stays the reference for what a filter means. That is what
makes the edges agree: Insights takes its window in whole seconds and reads --grep in its own regex dialect, a pattern
cannot say --grep or a value it cannot quote.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
# CloudWatch may take a line in after a later one of another log stream of the same group (each Lambda execution
# environment writes its own stream): each poll reads this much of a group again, and drops the eventIds it has shown.
LATE_ARRIVAL_MS = 10_000
_RUNNING = {"Scheduled", "Running"}

# botocore's own retries (`stack_logs` sets the adaptive mode: standard retries plus a client-side rate limiter, since
# --follow sends one FilterLogEvents per log group per poll, in a burst) absorb a short throttle within one call. They
# give up after a few tries, at most 20 s apart, which is too soon for two things `StackLogs._call` waits out on top
# of them: StartQuery's LimitExceededException (the account's quota of concurrent queries: a slot frees only when
# another query ends) and a --follow that runs for hours, which should not end on one throttled poll. Bounded all the
# same: after THROTTLE_TRIES calls, a clear error and exit 1.
BOTOCORE_ATTEMPTS = 3  # requests of one call, the first one included
THROTTLE_TRIES = 5  # calls of one operation, each with botocore's retries inside, before giving up
THROTTLE_FIRST_WAIT = 2.0  # seconds; the ceiling of the jittered wait doubles after each throttled call
THROTTLE_MAX_WAIT = 30.0

Progress = Callable[[str], None]
Jitter = Callable[[float], float]


def full_jitter(ceiling: float) -> float:
    """A wait anywhere up to `ceiling`, so that clients throttled together do not come back together."""
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


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
        jitter: Jitter = full_jitter,
    ) -> None:
        self.stack = stack
        self.logs = logs
        self._cloudformation = cloudformation
        self._timeout = timeout_seconds
        self._progress = progress or (lambda _: None)
        self._now, self._sleep, self._monotonic, self._jitter = now, sleep, monotonic, jitter
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
        rows = answer.get("results", [])
        # The local predicate has the last word (see the module's doc): a row Insights let through at a whole-second
        # edge of the window, or by its own reading of --grep, is not a match, and is not counted as one either.
        lines = [line for row in reversed(rows) if (line := _row_line(row)) is not None and query.matches(line)]
        matched = int(answer.get("statistics", {}).get("recordsMatched", len(rows))) - (len(rows) - len(lines))
        if matched > len(lines):
            cap = f" (the --limit; Logs Insights returns {RESULT_CAP:,} at most)" if len(rows) >= query.limit else ""
            notes.append(
                f"{matched:,} lines matched; showing the newest {len(lines):,}{cap}: narrow the window or the filters"
            )
        return Found(lines, matched, tuple(notes))

    def _start(self, groups: list[str], start: datetime, end: datetime, text: str) -> str:
        from botocore.exceptions import ClientError

        try:
            started = self._call(
                "start_query",
                self._progress,
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
                answer = self._call("get_query_results", self._progress, queryId=query_id)
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
            self.logs.stop_query(queryId=query_id)

    def _call(self, operation: str, say: Progress | None, **arguments: Any) -> dict[str, Any]:
        """One CloudWatch Logs call, made again after a jittered, growing wait while it is throttled (the note
        on BOTOCORE_ATTEMPTS says why botocore's retries are not the whole answer); any other error is the caller's."""
        from botocore.exceptions import ClientError

        waited = 0.0
        for tried in range(1, THROTTLE_TRIES + 1):
            try:
                answer: dict[str, Any] = getattr(self.logs, operation)(**arguments)
            except ClientError as error:
                if not is_throttling(error):
                    raise
                code = error.response["Error"].get("Code") or "429"
            else:
                return answer
            if tried == THROTTLE_TRIES:
                break
            pause = self._jitter(min(THROTTLE_MAX_WAIT, THROTTLE_FIRST_WAIT * 2 ** (tried - 1)))
            if say is not None:
                name = _operation_name(operation)
                say(f"CloudWatch Logs is throttling {name} ({code}): trying again in {math.ceil(pause)}s")
            self._sleep(pause)
            waited += pause
        raise SourceError(
            f"CloudWatch Logs kept throttling {_operation_name(operation)} ({code}): gave up after {THROTTLE_TRIES} "
            f"tries over {waited:.0f}s; try again in a minute"
        )

    def follow(self, query: LogQuery) -> Iterator[LogLine]:
        """FilterLogEvents on each group, every few seconds, each group from its own newest line (the first time from
        where the search before it ended, else the window's start, or now); the lines of one poll in time order, each
        line once."""
        origin = int((self._searched_until or query.start or self._now()).timestamp() * 1000)
        pattern = filter_pattern(query)
        cursors = {group: _Cursor(origin) for group in self.groups}
        while True:
            polled_ms = int(self._now().timestamp() * 1000)
            fresh = [
                event
                for group, cursor in cursors.items()
                for event in cursor.advance(self._events(group, cursor.since_ms, pattern), polled_ms)
            ]
            for event in sorted(fresh, key=lambda event: (event["timestamp"], event["eventId"])):
                line = parse_line(event.get("message", ""))
                if line is not None and query.matches(line):
                    yield line
            self._sleep(FOLLOW_POLL_SECONDS)

    def _events(self, group: str, since_ms: int, pattern: str) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import ClientError

        arguments: dict[str, Any] = {"logGroupName": group, "startTime": since_ms}
        if pattern:
            arguments["filterPattern"] = pattern
        try:
            while True:  # page by page, so that a throttled page is asked for again, not the whole group
                page = self._call("filter_log_events", None, **arguments)
                yield from page.get("events", [])
                if not page.get("nextToken"):
                    return
                arguments["nextToken"] = page["nextToken"]
        except ClientError as error:
            if error.response["Error"].get("Code") == "ResourceNotFoundException":
                return  # a function never invoked has no log group yet
            raise SourceError(f"{group}: {_message(error)}") from None


@dataclass
class _Cursor:
    """How far --follow has read one log group: FilterLogEvents goes on from `since_ms`, and `shown` (eventId to
    timestamp) holds what was already yielded from there on, so that reading it again prints nothing twice."""

    since_ms: int
    shown: dict[str, int] = field(default_factory=dict)

    def advance(self, events: Iterable[dict[str, Any]], polled_ms: int) -> list[dict[str, Any]]:
        """The events not shown yet; then the cursor moves to a little (LATE_ARRIVAL_MS) before the newest of them or
        before the poll began (`polled_ms`), whichever is later: a group with no matching line moves on too, so a
        selective filter never has a busy group scanned again from where the follow began."""
        fresh = []
        for event in events:
            if event["eventId"] not in self.shown:
                self.shown[event["eventId"]] = event["timestamp"]
                fresh.append(event)
        newest = max(self.shown.values(), default=polled_ms)
        self.since_ms = max(self.since_ms, max(newest, polled_ms) - LATE_ARRIVAL_MS)
        self.shown = {event_id: at for event_id, at in self.shown.items() if at >= self.since_ms}
        return fresh


def is_throttling(error: Any) -> bool:
    """Whether CloudWatch Logs refused a call for its rate or a quota: the codes botocore's retries treat as
    throttling (StartQuery's LimitExceededException among them), or an HTTP 429."""
    from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

    if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 429:
        return True
    return bool(ThrottledRetryableChecker().is_retryable(RetryContext(1, parsed_response=error.response)))


def stack_logs(stack: str, region: str | None, *, timeout_seconds: float, progress: Progress | None) -> StackLogs:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session(region_name=region)
        return StackLogs(
            stack,
            session.client(
                "logs", config=Config(retries={"mode": "adaptive", "total_max_attempts": BOTOCORE_ATTEMPTS})
            ),
            session.client("cloudformation"),
            timeout_seconds=timeout_seconds,
            progress=progress,
        )
    except BotoCoreError as error:
        raise SourceError(str(error)) from None


def _row_line(row: list[dict[str, str]]) -> LogLine | None:
    fields = {cell["field"]: cell.get("value", "") for cell in row}
    return parse_line(fields.get("@message", ""))


def _operation_name(operation: str) -> str:
    return "".join(word.title() for word in operation.split("_"))


def _message(error: Any) -> str:
    return str(error.response["Error"].get("Message") or error.response["Error"].get("Code"))


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return "hour" if hours == 1 else f"{hours:g} hours"
