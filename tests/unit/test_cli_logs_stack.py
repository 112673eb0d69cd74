"""`opscore logs --stack`: the Logs Insights query each filter compiles to, and the AWS calls (botocore's Stubber).

The query text is pinned here; what it means is pinned by the local source's tests (moto does not evaluate Insights
queries, and these tests do not pretend to).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from opscore_tools.logs.local_file import LocalFile
from opscore_tools.logs.records import LogQuery
from opscore_tools.logs.sources import SourceError
from opscore_tools.logs.stack import (
    LATE_ARRIVAL_MS,
    StackLogs,
    filter_pattern,
    insights_query,
    log_groups_of_stack,
    stack_logs,
)

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
HEAD = "fields @timestamp, @message\n| filter ispresent(level)\n"
TAIL = "| sort @timestamp desc\n| limit 1000"


@pytest.mark.parametrize(
    ("query", "filters"),
    [
        (LogQuery(), ""),
        (LogQuery(agents=("research-agent",)), '| filter agent_id = "research-agent"\n'),
        (LogQuery(agents=("a", "b")), '| filter agent_id in ["a", "b"]\n'),
        (LogQuery(sessions=("s1",)), '| filter session_id = "s1"\n'),
        (LogQuery(tasks=("s1-000",)), '| filter task_id = "s1-000"\n'),
        (LogQuery(workflows=("triage",)), '| filter workflow_id = "triage"\n'),
        (LogQuery(events=("task_failed",)), '| filter event = "task_failed"\n'),
        (LogQuery(error_types=("timeout",)), '| filter error_type = "timeout"\n'),
        (LogQuery(level="WARNING"), '| filter level in ["WARNING", "ERROR", "CRITICAL"]\n'),
        (LogQuery(level="CRITICAL"), '| filter level = "CRITICAL"\n'),
        (LogQuery(grep="lease (expired|lost)"), "| filter message like /lease (expired|lost)/\n"),
        (LogQuery(grep="a/b"), "| filter message like /a\\/b/\n"),
        (LogQuery(agents=('say "hi"',)), '| filter agent_id = "say \\"hi\\""\n'),
        # the window is StartQuery's startTime and endTime, never query text
        (LogQuery(start=NOW - timedelta(hours=1), end=NOW), ""),
    ],
)
def test_each_filter_compiles_to_one_line_of_the_query(query: LogQuery, filters: str) -> None:
    assert insights_query(query) == HEAD + filters + TAIL


def test_filters_combine_in_one_query() -> None:
    query = LogQuery(
        agents=("research-agent",),
        sessions=("s1",),
        events=("task_failed", "task_retry_scheduled"),
        error_types=("timeout",),
        level="ERROR",
        grep="(?i)deadline",
        limit=50,
    )
    assert insights_query(query) == (
        "fields @timestamp, @message\n"
        "| filter ispresent(level)\n"
        '| filter agent_id = "research-agent"\n'
        '| filter session_id = "s1"\n'
        '| filter event in ["task_failed", "task_retry_scheduled"]\n'
        '| filter error_type = "timeout"\n'
        '| filter level in ["ERROR", "CRITICAL"]\n'
        "| filter message like /(?i)deadline/\n"
        "| sort @timestamp desc\n"
        "| limit 50"
    )


@pytest.mark.parametrize(
    ("query", "pattern"),
    [
        (LogQuery(), ""),
        (LogQuery(grep="x"), ""),  # a regex on the message: checked on each line
        (LogQuery(agents=("a",)), '{ ($.agent_id = "a") }'),
        (
            LogQuery(agents=("a",), events=("task_failed", "task_leased")),
            '{ ($.agent_id = "a") && ($.event = "task_failed" || $.event = "task_leased") }',
        ),
        (LogQuery(level="ERROR"), '{ ($.level = "ERROR" || $.level = "CRITICAL") }'),
        (LogQuery(agents=('a"b',), sessions=("s",)), '{ ($.session_id = "s") }'),  # unquotable: checked on each line
    ],
)
def test_follow_filters_on_the_json_fields_where_a_pattern_can(query: LogQuery, pattern: str) -> None:
    assert filter_pattern(query) == pattern


def client(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


def resource(kind: str, physical: str) -> dict[str, Any]:
    return {
        "LogicalResourceId": physical.title().replace("-", ""),
        "PhysicalResourceId": physical,
        "ResourceType": kind,
        "LastUpdatedTimestamp": NOW,
        "ResourceStatus": "CREATE_COMPLETE",
    }


def test_log_groups_come_from_every_page_of_the_stacks_resources() -> None:
    cloudformation = client("cloudformation")
    with Stubber(cloudformation) as stubber:
        stubber.add_response(
            "list_stack_resources",
            {
                "StackResourceSummaries": [
                    resource("AWS::Lambda::Function", "ops-Dispatch-1"),
                    resource("AWS::Logs::LogGroup", "/aws/lambda/ops-Dispatch-1"),
                    resource("AWS::DynamoDB::Table", "ops-Table"),
                ],
                "NextToken": "page-2",
            },
            {"StackName": "ops"},
        )
        stubber.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": [resource("AWS::Logs::LogGroup", "/aws/vendedlogs/states/ops-runner")]},
            {"StackName": "ops", "NextToken": "page-2"},
        )
        groups = log_groups_of_stack(cloudformation, "ops")
    assert groups == ["/aws/lambda/ops-Dispatch-1", "/aws/vendedlogs/states/ops-runner"]


def test_a_missing_stack_is_a_clear_error() -> None:
    cloudformation = client("cloudformation")
    with Stubber(cloudformation) as stubber:
        stubber.add_client_error("list_stack_resources", "ValidationError", "Stack with id gone does not exist")
        with pytest.raises(SourceError, match="stack gone: Stack with id gone does not exist"):
            log_groups_of_stack(cloudformation, "gone")


def a_row(record: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"field": "@timestamp", "value": "2026-12-01 09:59:00.000"},
        {"field": "@message", "value": json.dumps(record)},
    ]


def at(moment: datetime) -> str:
    """A record's timestamp, as Powertools writes it."""
    return moment.isoformat(timespec="milliseconds")


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Clock:
    """Time that passes only when the code under test waits: every wait is recorded, none is slept."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.waits: list[float] = []
        self.jitter_ceilings: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds
        self.waits.append(seconds)

    def monotonic(self) -> float:
        return self.elapsed

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.elapsed)

    def jitter(self, ceiling: float) -> float:
        self.jitter_ceilings.append(ceiling)
        return ceiling / 2


@pytest.fixture
def clock() -> Clock:
    return Clock()


def stack_of(functions: list[str], clock: Clock, progress: list[str]) -> tuple[StackLogs, Any]:
    """A StackLogs over the given functions' log groups, and its (not yet stubbed) logs client."""
    logs, cloudformation = client("logs"), client("cloudformation")
    source = StackLogs(
        "ops",
        logs,
        cloudformation,
        timeout_seconds=5,
        progress=progress.append,
        now=clock.now,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=clock.jitter,
    )
    with Stubber(cloudformation) as stack_stubber:
        stack_stubber.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": [resource("AWS::Lambda::Function", name) for name in functions]},
            {"StackName": "ops"},
        )
        assert source.groups == [f"/aws/lambda/{name}" for name in functions]
    return source, logs


@pytest.fixture
def stack(clock: Clock) -> Iterator[tuple[StackLogs, Stubber, list[str]]]:
    progress: list[str] = []
    source, logs = stack_of(["ops-Fn-1"], clock, progress)
    with Stubber(logs) as stubber:
        yield source, stubber, progress
        stubber.assert_no_pending_responses()


def test_one_insights_query_is_started_and_polled_until_complete(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, stubber, progress = stack
    query = LogQuery(agents=("a",), start=NOW - timedelta(minutes=15), limit=2)
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {
            "logGroupNames": ["/aws/lambda/ops-Fn-1"],
            "startTime": int((NOW - timedelta(minutes=15)).timestamp()),
            "endTime": int(NOW.timestamp()) + 1,
            "queryString": insights_query(query),
            "limit": 10_000,
        },
    )
    stubber.add_response(
        "get_query_results", {"status": "Running", "statistics": {"recordsScanned": 1234.0}}, {"queryId": "q1"}
    )
    newest = {"level": "INFO", "message": "newest", "agent_id": "a", "timestamp": at(NOW - timedelta(minutes=1))}
    older = {"level": "INFO", "message": "older", "agent_id": "a", "timestamp": at(NOW - timedelta(minutes=2))}
    stubber.add_response(
        "get_query_results",
        {"status": "Complete", "results": [a_row(newest), a_row(older)], "statistics": {"recordsMatched": 2.0}},
        {"queryId": "q1"},
    )
    found = source.find(query)
    assert [line.get("message") for line in found.lines] == ["older", "newest"], "oldest first"
    assert found.matched == 2
    assert found.notes == ()
    assert progress == ["Logs Insights query running: 0s, 1,234 records scanned"]


def test_without_a_window_the_last_hour_is_searched_and_said(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, stubber, _ = stack
    expected = {"startTime": int((NOW - timedelta(hours=1)).timestamp()), "endTime": int(NOW.timestamp()) + 1}
    stubber.add_response(
        "start_query", {"queryId": "q1"}, {**expected, "logGroupNames": ANY, "queryString": ANY, "limit": ANY}
    )
    stubber.add_response("get_query_results", {"status": "Complete", "results": []}, {"queryId": "q1"})
    found = source.find(LogQuery())
    assert found.lines == []
    assert found.notes == ("no --since or --start: the last hour searched",)


def test_hitting_the_result_cap_is_said(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, stubber, _ = stack
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
    )
    rows = [a_row({"level": "INFO", "message": f"n{n}", "timestamp": at(NOW - timedelta(minutes=n))}) for n in range(2)]
    stubber.add_response(
        "get_query_results",
        {"status": "Complete", "results": rows, "statistics": {"recordsMatched": 25_000.0}},
        {"queryId": "q1"},
    )
    found = source.find(LogQuery(start=NOW - timedelta(days=1), limit=2))
    assert found.matched == 25_000
    assert found.notes == (
        "25,000 lines matched; showing the newest 2 (the --limit; Logs Insights returns 10,000 at most): "
        "narrow the window or the filters",
    )


def test_a_query_that_takes_too_long_is_stopped(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, stubber, progress = stack
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
    )
    for _ in range(6):
        stubber.add_response("get_query_results", {"status": "Running"}, {"queryId": "q1"})
    stubber.add_response("stop_query", {"success": True}, {"queryId": "q1"})
    with pytest.raises(SourceError, match=r"longer than 5s \(--timeout\); stopped"):
        source.find(LogQuery(start=NOW - timedelta(hours=1)))
    assert len(progress) == 5


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout"])
def test_a_query_that_fails_is_an_error(stack: tuple[StackLogs, Stubber, list[str]], status: str) -> None:
    source, stubber, _ = stack
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
    )
    stubber.add_response("get_query_results", {"status": status}, {"queryId": "q1"})
    with pytest.raises(SourceError, match=f"ended {status}"):
        source.find(LogQuery(start=NOW - timedelta(hours=1)))


def test_a_refused_query_is_an_error(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, stubber, _ = stack
    stubber.add_client_error("start_query", "MalformedQueryException", "unexpected symbol")
    with pytest.raises(SourceError, match="refused the query: unexpected symbol"):
        source.find(LogQuery(start=NOW - timedelta(hours=1)))


def test_more_than_the_cap_cannot_be_asked_for(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, _, _ = stack
    with pytest.raises(SourceError, match="at most 10,000"):
        source.find(LogQuery(limit=10_001))


def an_event(event_id: str, millis: int, record: dict[str, Any] | str) -> dict[str, Any]:
    message = record if isinstance(record, str) else json.dumps(record)
    return {"eventId": event_id, "timestamp": millis, "message": message, "logStreamName": "s", "ingestionTime": millis}


def test_follow_polls_filter_log_events_with_a_pattern_and_the_same_predicate(
    stack: tuple[StackLogs, Stubber, list[str]],
) -> None:
    source, stubber, _ = stack
    query = LogQuery(agents=("a",), grep="^lease")
    start = int(NOW.timestamp() * 1000)
    pattern = '{ ($.agent_id = "a") }'
    group = "/aws/lambda/ops-Fn-1"
    stubber.add_response(
        "filter_log_events",
        {
            "events": [
                an_event("1", start + 5, {"level": "INFO", "message": "lease granted", "agent_id": "a"}),
                an_event("2", start + 6, {"level": "INFO", "message": "not a lease", "agent_id": "a"}),
                an_event("3", start + 7, "REPORT RequestId: 1"),
            ]
        },
        {"logGroupName": group, "startTime": start, "filterPattern": pattern},
    )
    stubber.add_response(
        "filter_log_events",
        {
            "events": [
                an_event("3", start + 7, "REPORT RequestId: 1"),
                an_event("4", start + 9, {"level": "INFO", "message": "lease renewed", "agent_id": "a"}),
            ]
        },
        # the same group again from a little before its newest line (never before where the follow began)
        {"logGroupName": group, "startTime": start, "filterPattern": pattern},
    )
    following = source.follow(query)
    assert next(following).get("message") == "lease granted"
    assert next(following).get("message") == "lease renewed"


def test_follow_skips_a_log_group_not_created_yet(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, stubber, _ = stack
    start = int(NOW.timestamp() * 1000)
    stubber.add_client_error(
        "filter_log_events", "ResourceNotFoundException", "The specified log group does not exist."
    )
    stubber.add_response(
        "filter_log_events",
        {"events": [an_event("1", start + 1, {"level": "INFO", "message": "first"})]},
        {"logGroupName": "/aws/lambda/ops-Fn-1", "startTime": start},
    )
    assert next(source.follow(LogQuery())).get("message") == "first"


def test_the_command_on_a_stack_prints_the_lines_and_says_what_it_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from opscore_tools import cli
    from opscore_tools.logs import stack as stack_module

    logs, cloudformation = client("logs"), client("cloudformation")
    source = StackLogs("ops", logs, cloudformation, sleep=lambda _: None)
    asked: dict[str, Any] = {}

    def stack_logs(stack: str, region: str | None, **options: Any) -> StackLogs:
        asked.update(stack=stack, region=region, **options)
        return source

    monkeypatch.setattr(stack_module, "stack_logs", stack_logs)
    line = {"level": "ERROR", "message": "task failed", "agent_id": "a", "timestamp": "2026-12-01T09:59:00Z"}
    with Stubber(cloudformation) as stack_stubber, Stubber(logs) as stubber:
        stack_stubber.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": [resource("AWS::Lambda::Function", "ops-Fn-1")]},
            {"StackName": "ops"},
        )
        stubber.add_response(
            "start_query",
            {"queryId": "q1"},
            {
                "logGroupNames": ["/aws/lambda/ops-Fn-1"],
                "startTime": ANY,
                "endTime": ANY,
                "queryString": ANY,
                "limit": ANY,
            },
        )
        stubber.add_response(
            "get_query_results",
            {"status": "Complete", "results": [a_row(line)], "statistics": {"recordsMatched": 3.0}},
            {"queryId": "q1"},
        )
        result = CliRunner().invoke(
            cli.app,
            [
                *["logs", "--stack", "ops", "--region", "eu-west-1", "--level", "error", "--json"],
                *["--start", "2026-12-01T09:00:00Z", "--end", "2026-12-01T10:00:00Z"],
            ],
        )
    assert result.exit_code == 0, result.output
    assert asked == {"stack": "ops", "region": "eu-west-1", "timeout_seconds": 60.0, "progress": ANY}
    assert result.stdout == json.dumps(line) + "\n", "--json prints the raw line"
    assert "3 lines matched; showing the newest 1" in result.stderr


def test_the_command_says_which_stack_it_cannot_find(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from opscore_tools import cli
    from opscore_tools.logs import stack as stack_module

    cloudformation = client("cloudformation")
    monkeypatch.setattr(
        stack_module, "stack_logs", lambda stack, *_, **__: StackLogs(stack, client("logs"), cloudformation)
    )
    with Stubber(cloudformation) as stubber:
        stubber.add_client_error("list_stack_resources", "ValidationError", "Stack with id gone does not exist")
        result = CliRunner().invoke(cli.app, ["logs", "--stack", "gone"])
    assert result.exit_code == 1
    assert "stack gone: Stack with id gone does not exist" in result.stderr
    assert result.stdout == ""


def test_file_and_stack_together_are_bad_usage() -> None:
    from typer.testing import CliRunner

    from opscore_tools import cli

    result = CliRunner().invoke(cli.app, ["logs", "--stack", "ops", "--file", "x.jsonl"])
    assert result.exit_code == 2
    assert "--file or --stack" in result.stderr


def test_a_follow_after_a_search_goes_on_from_where_the_search_ended(
    stack: tuple[StackLogs, Stubber, list[str]],
) -> None:
    """`--since 15m --follow`: the search shows the window; the follow starts at its end, not at its start again."""
    source, stubber, _ = stack
    query = LogQuery(agents=("a",), start=NOW - timedelta(minutes=15))
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
    )
    shown = {"level": "INFO", "message": "in the window", "agent_id": "a", "timestamp": at(NOW - timedelta(minutes=1))}
    stubber.add_response("get_query_results", {"status": "Complete", "results": [a_row(shown)]}, {"queryId": "q1"})
    assert [line.get("message") for line in source.find(query).lines] == ["in the window"]

    searched_until = int(NOW.timestamp() * 1000)
    stubber.add_response(
        "filter_log_events",
        {
            "events": [
                an_event(
                    "9",
                    searched_until + 5,
                    {"level": "INFO", "message": "new", "agent_id": "a", "timestamp": "2026-12-01T10:00:01.000+00:00"},
                )
            ]
        },
        {"logGroupName": "/aws/lambda/ops-Fn-1", "startTime": searched_until, "filterPattern": ANY},
    )
    assert next(source.follow(query)).get("message") == "new"


def test_insights_rows_are_checked_with_the_local_predicate(
    stack: tuple[StackLogs, Stubber, list[str]], tmp_path: Any
) -> None:
    """Insights takes the window in whole seconds and --grep in its own regex dialect: the local predicate decides."""
    source, stubber, _ = stack
    # Given a window with sub-second edges and a regex, and rows Insights answered for them
    start, end = (
        datetime(2026, 12, 1, 9, 45, 0, 500_000, tzinfo=UTC),
        datetime(2026, 12, 1, 9, 59, 59, 250_000, tzinfo=UTC),
    )
    query = LogQuery(start=start, end=end, grep=r"\blease expired\b")
    records = [
        {"level": "WARNING", "message": "lease expired", "timestamp": at(start - timedelta(milliseconds=300))},
        {"level": "WARNING", "message": "lease expired", "timestamp": at(start)},
        {"level": "WARNING", "message": "sublease expired", "timestamp": at(start + timedelta(minutes=5))},
        {"level": "WARNING", "message": "lease expired", "timestamp": at(end - timedelta(milliseconds=1))},
        {"level": "WARNING", "message": "lease expired", "timestamp": at(end)},
    ]
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {
            "logGroupNames": ANY,
            "startTime": int(start.timestamp()),  # 09:45:00, half a second early
            "endTime": int(end.timestamp()) + 1,  # 10:00:00, three quarters of a second late
            "queryString": ANY,
            "limit": ANY,
        },
    )
    stubber.add_response(
        "get_query_results",
        {
            "status": "Complete",
            "results": [a_row(record) for record in reversed(records)],
            "statistics": {"recordsMatched": 5.0},
        },
        {"queryId": "q1"},
    )
    # When the stack is searched
    found = source.find(query)
    # Then only the lines the local predicate matches are shown and counted: the window's own edges, Python's regex
    assert [line.get("timestamp") for line in found.lines] == [at(start), at(end - timedelta(milliseconds=1))]
    assert found.matched == 2
    assert found.notes == ()
    # and the local file answers the same lines for the same filters
    log_file = tmp_path / "opscore.jsonl"
    log_file.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert [line.raw for line in LocalFile(log_file).find(query).lines] == [line.raw for line in found.lines]


def test_the_cap_is_still_said_when_the_predicate_drops_a_row(stack: tuple[StackLogs, Stubber, list[str]]) -> None:
    source, stubber, _ = stack
    # Given a search whose --limit Insights filled, one of its rows a little before the window
    start = NOW - timedelta(hours=1, milliseconds=-500)
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
    )
    rows = [
        a_row({"level": "INFO", "message": "in", "timestamp": at(NOW - timedelta(minutes=1))}),
        a_row({"level": "INFO", "message": "early", "timestamp": at(start - timedelta(milliseconds=100))}),
    ]
    stubber.add_response(
        "get_query_results",
        {"status": "Complete", "results": rows, "statistics": {"recordsMatched": 25_000.0}},
        {"queryId": "q1"},
    )
    # When it is searched
    found = source.find(LogQuery(start=start, limit=2))
    # Then the row is left out, and the note still says that the limit was hit
    assert [line.get("message") for line in found.lines] == ["in"]
    assert found.matched == 24_999
    assert found.notes == (
        "24,999 lines matched; showing the newest 1 (the --limit; Logs Insights returns 10,000 at most): "
        "narrow the window or the filters",
    )


def test_follow_reads_each_log_group_on_from_its_own_newest_line(clock: Clock) -> None:
    """A group whose line CloudWatch takes in late loses nothing to a busier group; no line is printed twice."""
    source, logs = stack_of(["ops-A-1", "ops-B-1"], clock, [])
    group_a, group_b = "/aws/lambda/ops-A-1", "/aws/lambda/ops-B-1"
    origin = millis(NOW)
    a1 = an_event("a1", origin + 60_000, {"level": "INFO", "message": "a1"})
    a2 = an_event("a2", origin + 61_000, {"level": "INFO", "message": "a2"})
    b1 = an_event("b1", origin + 1_000, {"level": "INFO", "message": "b1, written before a1, taken in late"})
    with Stubber(logs) as stubber:
        # Given a first poll in which only group A has a line
        stubber.add_response("filter_log_events", {"events": [a1]}, {"logGroupName": group_a, "startTime": origin})
        stubber.add_response("filter_log_events", {"events": []}, {"logGroupName": group_b, "startTime": origin})
        # and a second in which A answers a1 again with a newer line, and B the line it took in late
        stubber.add_response(
            "filter_log_events", {"events": [a1, a2]}, {"logGroupName": group_a, "startTime": origin + 50_000}
        )
        stubber.add_response("filter_log_events", {"events": [b1]}, {"logGroupName": group_b, "startTime": origin})
        # When the stack is followed
        following = source.follow(LogQuery())
        messages = [next(following).get("message") for _ in range(3)]
        stubber.assert_no_pending_responses()
    # Then B was asked from its own position, every line came once, and one poll's lines in time order
    assert messages == ["a1", "b1, written before a1, taken in late", "a2"]
    assert clock.waits == [2.0]


QUARANTINES = '{ ($.event = "agent_quarantined") }'


def test_follow_moves_a_group_with_no_matching_line_on_as_time_passes(clock: Clock) -> None:
    """A selective filter on a busy group: once the polls are past the late-arrival margin, each asks from a little
    before the previous poll began, never again from where the follow began."""
    source, logs = stack_of(["ops-Fn-1"], clock, [])
    group, origin = "/aws/lambda/ops-Fn-1", millis(NOW)
    found = an_event("q", origin + 17_000, {"level": "WARNING", "message": "quarantined", "event": "agent_quarantined"})
    with Stubber(logs) as stubber:
        # Given a group with no matching line for eight polls (2 s apart), then one
        for poll in range(1, 10):
            since = origin + max(0, 2_000 * (poll - 2) - LATE_ARRIVAL_MS)
            answer = {"events": [found] if poll == 9 else []}
            stubber.add_response(
                "filter_log_events", answer, {"logGroupName": group, "startTime": since, "filterPattern": QUARANTINES}
            )
        # When it is followed for that line
        line = next(source.follow(LogQuery(events=("agent_quarantined",))))
        stubber.assert_no_pending_responses()
    # Then it came, each poll having asked from where the one before began, less the margin
    assert line.get("message") == "quarantined"


def test_follow_shows_a_line_taken_in_late_in_its_own_group(clock: Clock) -> None:
    source, logs = stack_of(["ops-Fn-1"], clock, [])
    group, origin = "/aws/lambda/ops-Fn-1", millis(NOW)
    newer = an_event("2", origin + 20_000, {"level": "INFO", "message": "from one execution environment"})
    late = an_event("1", origin + 15_000, {"level": "INFO", "message": "from another, taken in after it"})
    with Stubber(logs) as stubber:
        # Given a group whose second poll holds a line older than the newest of the first
        stubber.add_response("filter_log_events", {"events": [newer]}, {"logGroupName": group, "startTime": origin})
        stubber.add_response(
            "filter_log_events", {"events": [late, newer]}, {"logGroupName": group, "startTime": origin + 10_000}
        )
        # When it is followed
        following = source.follow(LogQuery())
        messages = [next(following).get("message") for _ in range(2)]
    # Then the late line is shown, and the one already shown is not shown again
    assert messages == ["from one execution environment", "from another, taken in after it"]


def complete_query(stubber: Stubber, rows: list[list[dict[str, str]]]) -> None:
    stubber.add_response("get_query_results", {"status": "Complete", "results": rows}, {"queryId": "q1"})


def test_a_throttled_start_query_is_tried_again_after_a_jittered_growing_wait(
    stack: tuple[StackLogs, Stubber, list[str]], clock: Clock
) -> None:
    source, stubber, progress = stack
    # Given an account at its quota of concurrent queries for two tries
    for _ in range(2):
        stubber.add_client_error("start_query", "LimitExceededException", "Account maximum query concurrency")
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
    )
    complete_query(stubber, [a_row({"level": "INFO", "message": "found", "timestamp": at(NOW)})])
    # When the stack is searched
    found = source.find(LogQuery(start=NOW - timedelta(hours=1)))
    # Then it waited a jittered share of a growing ceiling before each new try, said so, and found the line
    assert [line.get("message") for line in found.lines] == ["found"]
    assert clock.jitter_ceilings == [2.0, 4.0]
    assert clock.waits == [1.0, 2.0]
    assert progress == [
        "CloudWatch Logs is throttling StartQuery (LimitExceededException): trying again in 1s",
        "CloudWatch Logs is throttling StartQuery (LimitExceededException): trying again in 2s",
    ]


def test_a_throttled_poll_of_the_query_is_tried_again(
    stack: tuple[StackLogs, Stubber, list[str]], clock: Clock
) -> None:
    source, stubber, _ = stack
    stubber.add_response(
        "start_query",
        {"queryId": "q1"},
        {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
    )
    stubber.add_client_error("get_query_results", "ThrottlingException", "Rate exceeded")
    complete_query(stubber, [])
    assert source.find(LogQuery(start=NOW - timedelta(hours=1))).lines == []
    assert clock.waits == [1.0]


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("TooManyRequestsException", 400), ("Throttling", 400), ("SomethingNew", 429)],
)
def test_a_throttled_follow_poll_is_tried_again(
    stack: tuple[StackLogs, Stubber, list[str]], clock: Clock, code: str, status: int
) -> None:
    source, stubber, _ = stack
    # Given a group that answers a follow's poll throttled once (any code botocore calls throttling, or a 429)
    stubber.add_client_error("filter_log_events", code, "Rate exceeded", http_status_code=status)
    stubber.add_response(
        "filter_log_events",
        {"events": [an_event("1", millis(NOW) + 1, {"level": "INFO", "message": "after the wait"})]},
        {"logGroupName": "/aws/lambda/ops-Fn-1", "startTime": millis(NOW)},
    )
    # When the stack is followed
    line = next(source.follow(LogQuery()))
    # Then the poll was made again after a wait
    assert line.get("message") == "after the wait"
    assert clock.waits == [1.0]


def test_a_throttled_page_is_asked_for_again_not_the_whole_group(
    stack: tuple[StackLogs, Stubber, list[str]], clock: Clock
) -> None:
    source, stubber, _ = stack
    group, origin = "/aws/lambda/ops-Fn-1", millis(NOW)
    stubber.add_response(
        "filter_log_events",
        {"events": [an_event("1", origin + 1, {"level": "INFO", "message": "page 1"})], "nextToken": "p2"},
        {"logGroupName": group, "startTime": origin},
    )
    stubber.add_client_error("filter_log_events", "ThrottlingException", "Rate exceeded")
    stubber.add_response(
        "filter_log_events",
        {"events": [an_event("2", origin + 2, {"level": "INFO", "message": "page 2"})]},
        {"logGroupName": group, "startTime": origin, "nextToken": "p2"},
    )
    following = source.follow(LogQuery())
    assert [next(following).get("message") for _ in range(2)] == ["page 1", "page 2"]
    assert clock.waits == [1.0]


def test_throttling_that_lasts_is_a_clear_error(stack: tuple[StackLogs, Stubber, list[str]], clock: Clock) -> None:
    source, stubber, _ = stack
    # Given a group that stays throttled
    for _ in range(5):
        stubber.add_client_error("filter_log_events", "ThrottlingException", "Rate exceeded")
    # When the stack is followed
    # Then it gives up after a bounded number of tries, each wait's ceiling doubled, and says why
    with pytest.raises(SourceError, match=r"kept throttling FilterLogEvents \(ThrottlingException\): gave up after 5"):
        next(source.follow(LogQuery()))
    assert clock.jitter_ceilings == [2.0, 4.0, 8.0, 16.0]
    assert clock.waits == [1.0, 2.0, 4.0, 8.0]


def test_other_errors_are_not_tried_again(stack: tuple[StackLogs, Stubber, list[str]], clock: Clock) -> None:
    source, stubber, _ = stack
    stubber.add_client_error("filter_log_events", "AccessDeniedException", "not allowed", http_status_code=403)
    with pytest.raises(SourceError, match="ops-Fn-1: not allowed"):
        next(source.follow(LogQuery()))
    assert clock.waits == []


def test_the_command_ends_a_throttled_follow_with_exit_1_and_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from opscore_tools import cli
    from opscore_tools.logs import stack as stack_module

    logs, cloudformation = client("logs"), client("cloudformation")
    source = StackLogs("ops", logs, cloudformation, sleep=lambda _: None)
    monkeypatch.setattr(stack_module, "stack_logs", lambda *_, **__: source)
    with Stubber(cloudformation) as stack_stubber, Stubber(logs) as stubber:
        # Given a stack whose search answers, then whose log group stays throttled
        stack_stubber.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": [resource("AWS::Lambda::Function", "ops-Fn-1")]},
            {"StackName": "ops"},
        )
        stubber.add_response(
            "start_query",
            {"queryId": "q1"},
            {"logGroupNames": ANY, "startTime": ANY, "endTime": ANY, "queryString": ANY, "limit": ANY},
        )
        complete_query(stubber, [])
        for _ in range(5):
            stubber.add_client_error("filter_log_events", "ThrottlingException", "Rate exceeded")
        # When it is followed
        result = CliRunner().invoke(cli.app, ["logs", "--stack", "ops", "--follow"])
    # Then the command says why it stopped and exits 1, without a traceback
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "error: CloudWatch Logs kept throttling FilterLogEvents (ThrottlingException)" in result.stderr
    assert "Traceback" not in result.output


def test_the_stacks_logs_client_backs_off_in_botocore_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given credentials in the environment (nothing is asked of AWS: building a client sends no request)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    # When the command builds the source of a stack
    source = stack_logs("ops", "eu-west-1", timeout_seconds=60, progress=None)
    # Then its CloudWatch Logs client retries throttles itself, with botocore's adaptive (rate-limiting) mode
    assert source.logs.meta.config.retries["mode"] == "adaptive"
    assert source.logs.meta.config.retries["total_max_attempts"] == 3
