"""The dashboard's own answers: its static files (and nothing else from disk), and the log endpoint's filters and
its admin check, on the Dashboard class with a log source and an API verdict made up for each test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from opscore_tools.dashboard.web import LOGS_PATH, VERDICT_SECONDS, Dashboard, as_parameters, log_query_of
from opscore_tools.logs.records import LogLine, LogQuery, UsageError, parse_line
from opscore_tools.logs.sources import Found, SourceError

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Lines:
    """A log source holding a few lines, matched with the one predicate every source uses."""

    def __init__(self, *records: dict[str, object]) -> None:
        self.lines = [line for record in records if (line := parse_line(json.dumps(record))) is not None]
        self.queries: list[LogQuery] = []

    def describe(self) -> str:
        return "test lines"

    def find(self, query: LogQuery) -> Found:
        self.queries.append(query)
        matched = [line for line in self.lines if query.matches(line)]
        return Found(matched[-query.limit :], len(matched))

    def follow(self, query: LogQuery) -> Iterator[LogLine]:
        raise NotImplementedError


class Api:
    """The API's verdict on each key (200 admin, 403 agent, 401 unknown), counting the questions."""

    def __init__(self) -> None:
        self.asked = 0
        self.verdicts = {"admin-key": 200, "agent-key": 403}

    def __call__(self, key: str) -> int:
        self.asked += 1
        return self.verdicts.get(key, 401)


def record(agent: str, level: str, event: str, message: str, at: str) -> dict[str, object]:
    return {"level": level, "message": message, "event": event, "agent_id": agent, "timestamp": at}


def logs(dashboard: Dashboard, key: str, **query: str) -> tuple[int, dict[str, object]]:
    reply = dashboard.handle("GET", LOGS_PATH, list(query.items()), [("X-API-Key", key)] if key else [])
    return reply.status, json.loads(reply.body)


def test_the_static_files_are_served_and_nothing_else() -> None:
    dashboard = Dashboard(Lines, Api())
    index = dashboard.handle("GET", "/ui/", [], [])
    assert (index.status, index.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b'<script type="module" src="app.js">' in index.body
    assert "script-src 'self'" in index.headers["Content-Security-Policy"], "no script from anywhere else"
    script = dashboard.handle("GET", "/ui/app.js", [], [])
    assert (script.status, script.headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
    assert dashboard.handle("GET", "/ui", [], []).headers["Location"] == "/ui/"
    for outside in ("/ui/../web.py", "/ui/static/app.js", "/ui/.hidden", "/ui/%2e%2e/web.py", "/ui/nothing.js"):
        assert dashboard.handle("GET", outside, [], []).status == 404, outside
    assert dashboard.handle("POST", "/ui/", [], []).status == 405


def test_the_log_endpoint_reads_the_source_for_admin_keys_only() -> None:
    # given lines of two agents and the API's verdicts
    source = Lines(
        record("a1", "INFO", "task_queued", "task queued", "2026-12-01T09:59:00+00:00"),
        record("a2", "WARNING", "task_failed", "lease expired", "2026-12-01T09:59:30+00:00"),
    )
    api = Api()
    dashboard = Dashboard(lambda: source, api)

    # then no key, an unknown key and an agent's key read nothing
    assert logs(dashboard, "")[0] == 401
    assert logs(dashboard, "who-knows")[0] == 401
    status, body = logs(dashboard, "agent-key")
    assert (status, body["error"]["code"]) == (403, "forbidden")  # type: ignore[index]
    assert source.queries == []

    # and an admin's key reads the lines the filters match, each with its time and record
    status, body = logs(dashboard, "admin-key", agent="a2", level="warning")
    assert status == 200
    assert body["lines"] == [{"time": "2026-12-01T09:59:30+00:00", "record": source.lines[1].record}]
    assert (body["matched"], body["source"]) == (1, "test lines")


def test_the_apis_verdict_on_a_key_is_kept_a_minute() -> None:
    clock = [100.0]
    api = Api()
    dashboard = Dashboard(Lines, api, clock=lambda: clock[0])
    for _ in range(3):
        assert logs(dashboard, "admin-key")[0] == 200
    assert api.asked == 1, "one question for a poll every few seconds"
    api.verdicts["admin-key"] = 401  # revoked
    clock[0] += VERDICT_SECONDS + 1
    assert logs(dashboard, "admin-key")[0] == 401
    assert logs(dashboard, "who-knows")[0] == 401
    assert logs(dashboard, "who-knows")[0] == 401
    assert api.asked == 4, "an unknown key is asked about every time"


def test_a_source_that_cannot_be_read_is_a_503_saying_why() -> None:
    def broken() -> Lines:
        raise SourceError("no log file under .opscore/logs: start `opscore local`")

    status, body = logs(Dashboard(broken, Api()), "admin-key")
    assert (status, body["error"]["message"]) == (503, "no log file under .opscore/logs: start `opscore local`")  # type: ignore[index]


def test_the_filters_are_the_commands_and_a_bad_one_is_named() -> None:
    query = log_query_of(
        [("agent", "a1"), ("agent", "a2"), ("event", "task_failed"), ("error_type", "States.Timeout"),
         ("since", "15m"), ("grep", "lease"), ("level", "WARNING"), ("limit", "50"), ("session", "")],
        NOW,
    )  # fmt: skip
    assert (query.agents, query.events, query.error_types, query.sessions) == (
        ("a1", "a2"),
        ("task_failed",),
        ("States.Timeout",),
        (),
    )
    assert (query.start, query.end, query.grep, query.limit, query.level) == (
        datetime(2026, 12, 1, 9, 45, tzinfo=UTC),
        None,
        "lease",
        50,
        "WARNING",
    )
    for bad, named in (
        ([("since", "soon")], "--since"),
        ([("level", "LOUD")], "--level"),
        ([("grep", "(")], "--grep"),
        ([("limit", "0")], "limit"),
        ([("limit", "lots")], "limit"),
        ([("agents", "a1")], "unknown filter 'agents'"),
        ([("since", "5m"), ("start", "2026-12-01T09:00:00Z")], "--since or --start"),
    ):
        with pytest.raises(UsageError, match=named.replace("(", r"\(")):
            log_query_of(bad, NOW)


def test_the_log_source_is_built_once_and_the_follow_interval_is_the_servers() -> None:
    # given a source whose building is counted (a stack's finds its log groups when built)
    built: list[Lines] = []

    def build() -> Lines:
        built.append(Lines(record("a1", "INFO", "task_queued", "task queued", "2026-12-01T09:59:00+00:00")))
        return built[-1]

    dashboard = Dashboard(build, Api(), follow_seconds=15.0)

    # when the log view polls three times: one source, three reads, and the pace the server set
    for _ in range(3):
        status, body = logs(dashboard, "admin-key")
        assert (status, body["follow_seconds"]) == (200, 15.0)
    assert len(built) == 1
    assert len(built[0].queries) == 3


def test_a_bad_filter_is_named_as_the_urls_parameter_not_the_commands_option() -> None:
    # given an admin's log view with filters it refuses
    dashboard = Dashboard(Lines, Api())
    for query, named in (
        ({"since": "soon"}, "since takes an amount"),
        ({"level": "LOUD"}, "level must be one of"),
        ({"since": "5m", "start": "2026-12-01T09:00:00Z"}, "give since or start, not both"),
    ):
        # when it is asked for: a 400 naming the parameter, as in the URL
        status, body = logs(dashboard, "admin-key", **query)
        message = body["error"]["message"]  # type: ignore[index]
        assert (status, message.startswith(named)) == (400, True), message
        assert "--" not in message
    assert as_parameters("--error-type or --end") == "error_type or end"
