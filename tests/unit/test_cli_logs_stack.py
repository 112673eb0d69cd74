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

from opscore_tools.logs.records import LogQuery
from opscore_tools.logs.sources import SourceError
from opscore_tools.logs.stack import StackLogs, filter_pattern, insights_query, log_groups_of_stack

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


class Clock:
    def __init__(self) -> None:
        self.elapsed = 0.0

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds

    def monotonic(self) -> float:
        return self.elapsed


@pytest.fixture
def stack() -> Iterator[tuple[StackLogs, Stubber, list[str]]]:
    logs, cloudformation = client("logs"), client("cloudformation")
    progress: list[str] = []
    clock = Clock()
    source = StackLogs(
        "ops",
        logs,
        cloudformation,
        timeout_seconds=5,
        progress=progress.append,
        now=lambda: NOW,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    with Stubber(cloudformation) as stack_stubber:
        stack_stubber.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": [resource("AWS::Lambda::Function", "ops-Fn-1")]},
            {"StackName": "ops"},
        )
        assert source.groups == ["/aws/lambda/ops-Fn-1"]
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
    newest, older = {"level": "INFO", "message": "newest"}, {"level": "INFO", "message": "older"}
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
    rows = [a_row({"level": "INFO", "message": f"n{n}"}) for n in range(2)]
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
        {"logGroupName": group, "startTime": start + 7, "filterPattern": pattern},
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
            cli.app, ["logs", "--stack", "ops", "--region", "eu-west-1", "--since", "2h", "--level", "error", "--json"]
        )
    assert result.exit_code == 0, result.output
    assert asked == {"stack": "ops", "region": "eu-west-1", "timeout_seconds": 60.0, "progress": ANY}
    assert json.loads(result.stdout) == line
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
    shown = {"level": "INFO", "message": "in the window", "agent_id": "a"}
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
