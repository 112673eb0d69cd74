"""template.yaml's CloudWatch resources, checked as data: the saved Logs Insights queries, the dashboard (every widget
names a function, table or metric that exists) and the alarms, with and without an SNS topic to notify."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from opscore.sessions.models import SessionStatus, TaskStatus
from opscore_tools.local.template import _CfnLoader
from tests.conftest import REPO, TEMPLATE_PATH

# The `event` names of the log schema (docs/logging.md, which a test holds the code to) the saved queries filter on.
EVENTS = set(
    re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| [^|]+ \| [^|]* \|$", (REPO / "docs" / "logging.md").read_text(), re.M)
)
INSIGHTS_COMMANDS = {"fields", "filter", "stats", "sort", "limit", "display", "parse", "dedup"}
# The AWS metrics the dashboard and the alarms may read, by namespace.
AWS_METRICS = {
    "AWS/ApiGateway": {"Count", "4XXError", "5XXError", "Latency", "IntegrationLatency"},
    "AWS/Lambda": {"Errors", "Throttles", "Duration", "Invocations", "ConcurrentExecutions"},
    "AWS/DynamoDB": {"ReadThrottleEvents", "WriteThrottleEvents", "ThrottledRequests"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible"},
    "AWS/States": {
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
    },
}
TOPIC = "arn:aws:sns:eu-west-1:123456789012:opscore-alarms"
NOTIFY = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE_PATH.read_text(), Loader=_CfnLoader)  # noqa: S506
    return loaded


def resources(document: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: resource for name, resource in document["Resources"].items() if resource["Type"] == kind}


def functions(document: dict[str, Any]) -> set[str]:
    return set(resources(document, "AWS::Serverless::Function"))


def emitted_metrics() -> set[str]:
    """The metric names the code passes to Powertools' add_metric, read from its source; a name built from a status
    (f"Tasks{...}", f"Sessions{...}") stands for one name per status."""
    names: set[str] = set()
    for path in [*(REPO / "layers").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        for call in re.findall(r"add_metric\(\s*name=(.+?),\s*unit=", path.read_text(), flags=re.DOTALL):
            names.update(re.findall(r'(?<!f)"([A-Z][A-Za-z]+)"', call))
            if call.startswith('f"Tasks{'):
                names.update(f"Tasks{status.value.title().replace('_', '')}" for status in TaskStatus)
            if call.startswith('f"Sessions{'):
                names.update(f"Sessions{status.value.title()}" for status in SessionStatus)
    return names


# ---------------------------------------------------------------- saved queries


def queries(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = resources(document, "AWS::Logs::QueryDefinition").values()
    return {query["Properties"]["Name"]["Fn::Sub"]: query["Properties"] for query in found}


def test_the_saved_queries_are_the_stacks_own_and_read_its_log_groups(document: dict[str, Any]) -> None:
    saved = queries(document)
    assert set(saved) == {
        "${AWS::StackName}/errors-by-agent",
        "${AWS::StackName}/agent-state-changes",
        "${AWS::StackName}/slow-tasks-by-action",
        "${AWS::StackName}/audit",
        "${AWS::StackName}/failed-sessions",
        "${AWS::StackName}/auth-failures",
        "${AWS::StackName}/runner-errors",
        "${AWS::StackName}/api-refusals",
    }
    groups = resources(document, "AWS::Logs::LogGroup")
    function_groups = {f"{name.removesuffix('Function')}LogGroup" for name in functions(document)}
    assert function_groups <= set(groups)
    for name, query in saved.items():
        read = {ref["Ref"] for ref in query["LogGroupNames"]}
        assert read <= set(groups), name
        if name.endswith("/auth-failures"):
            assert read == {"AuthorizerLogGroup"}
        elif name.endswith("/runner-errors"):
            assert read == {"SessionRunnerLogGroup"}
        elif name.endswith("/api-refusals"):
            assert read == {"ApiAccessLogGroup"}
        else:
            assert read == function_groups, f"{name} reads every function's log"


def test_each_saved_query_is_a_pipeline_of_insights_commands_on_known_events(document: dict[str, Any]) -> None:
    for name, query in queries(document).items():
        text = query["QueryString"]
        commands = [stage.split()[0] for stage in text.split("\n| ")]
        assert set(commands) <= INSIGHTS_COMMANDS, name
        assert "\n" not in " ".join(text.split("\n| ")), f"{name}: one command per line, each after '| '"
        assert text.count("(") == text.count(")"), name
        named = set(re.findall(r'event = "(\w+)"', text))
        for listed in re.findall(r"event in \[([^\]]*)\]", text):
            named.update(re.findall(r'"(\w+)"', listed))
        assert named <= EVENTS, name
    texts = {name.rsplit("/", 1)[1]: query["QueryString"] for name, query in queries(document).items()}
    assert 'event = "state_changed"' in texts["agent-state-changes"]
    assert "pct(run_ms, 95)" in texts["slow-tasks-by-action"]
    assert "by action" in texts["slow-tasks-by-action"]
    assert "error_message" in texts["failed-sessions"]
    assert "by agent_id" in texts["errors-by-agent"]
    assert 'event = "audit" and status = 401' in texts["auth-failures"]
    assert 'event = "audit"' in texts["audit"]
    assert {"key_id", "action", "outcome", "source_ip"} <= set(re.findall(r"\w+", texts["audit"]))
    # The access log's fields (the API's AccessLogSetting), not the functions' log schema.
    assert "status >= 400" in texts["api-refusals"]
    assert "by status, error_type, key_id, agent_id, source_ip" in texts["api-refusals"]


def test_the_documentation_shows_each_saved_query_as_deployed(document: dict[str, Any]) -> None:
    documented = (REPO / "docs" / "observability.md").read_text()
    for name, query in queries(document).items():
        assert query["QueryString"] in documented, name


# ---------------------------------------------------------------- dashboard


def dashboard(document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The dashboard's body as JSON (each ${...} of its !Sub kept as text) and the raw !Sub string."""
    (board,) = resources(document, "AWS::CloudWatch::Dashboard").values()
    assert board["Properties"]["DashboardName"] == {"Ref": "AWS::StackName"}
    raw: str = board["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(raw), raw


def test_every_substitution_in_the_dashboard_names_something_the_template_has(document: dict[str, Any]) -> None:
    _, raw = dashboard(document)
    for name in re.findall(r"\$\{([^}!]+)\}", raw):
        target = name.removesuffix(".Arn")
        assert target.startswith("AWS::") or target in document["Parameters"] or target in document["Resources"], name


def metric_lines(body: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    return [
        (widget["properties"]["title"], line)
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for line in widget["properties"]["metrics"]
    ]


def test_every_dashboard_metric_is_one_the_code_or_aws_emits(document: dict[str, Any]) -> None:
    body, _ = dashboard(document)
    emitted = emitted_metrics()
    assert {"TasksLeased", "TimeToDispatch", "AgentsQuarantined", "QuarantinesLifted", "SessionsError"} <= emitted
    service = document["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    seen: set[str] = set()
    for title, line in metric_lines(body):
        if isinstance(line[0], dict):
            # A SEARCH over the session runners, which exist only at run time.
            search = re.fullmatch(
                r"SUM\(SEARCH\('\{AWS/States,StateMachineArn\} MetricName=\"(\w+)\" "
                r"StateMachineArn=\$\{RunnerNamePrefix\}', 'Sum', 300\)\)",
                line[0]["expression"],
            )
            assert search, title
            assert search[1] in AWS_METRICS["AWS/States"], title
            seen.add(search[1])
            continue
        namespace, metric, *rest = line
        dimensions = [item for item in rest if not isinstance(item, dict)]
        seen.add(metric)
        if namespace == "OpsCore":
            assert metric in emitted, f"{title}: no add_metric emits {metric}"
            assert dimensions == ["service", service], title
        else:
            assert metric in AWS_METRICS[namespace], f"{title}: {namespace} {metric}"
    assert {"ExecutionsFailed", "ExecutionsTimedOut", "TasksLeased", "TimeToDispatch", "AgentsQuarantined"} <= seen


def test_the_dashboard_shows_each_function_api_and_table(document: dict[str, Any]) -> None:
    body, _ = dashboard(document)
    by_function: dict[str, set[str]] = {}
    tables: set[str] = set()
    for title, line in metric_lines(body):
        if isinstance(line[0], dict):
            continue
        namespace, metric, *rest = line
        dimensions = dict(zip(rest[0:-1:2], rest[1::2], strict=False))
        if namespace == "AWS/Lambda":
            by_function.setdefault(metric, set()).add(dimensions["FunctionName"])
        elif namespace == "AWS/ApiGateway":
            assert dimensions == {"ApiName": "${AWS::StackName}", "Stage": "${StageName}"}, title
        elif namespace == "AWS/DynamoDB":
            tables.add(dimensions["TableName"])
    every = {f"${{{name}}}" for name in functions(document)}
    assert by_function == {"Errors": every, "Throttles": every, "Duration": every}
    assert tables == {f"${{{name}}}" for name in resources(document, "AWS::DynamoDB::Table")}
    # The API's metrics are found by its name: the stack's.
    (api,) = resources(document, "AWS::Serverless::Api").values()
    assert api["Properties"]["Name"] == {"Ref": "AWS::StackName"}


def test_the_dashboard_widgets_fit_the_grid_and_list_the_alarms(document: dict[str, Any]) -> None:
    body, _ = dashboard(document)
    cells: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        assert widget["x"] >= 0
        assert widget["x"] + widget["width"] <= 24
        covered = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not covered & cells, "widgets overlap"
        cells |= covered
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "${AWS::Region}"
    (listing,) = [widget for widget in body["widgets"] if widget["type"] == "alarm"]
    alarms = {f"${{{name}.Arn}}" for name in resources(document, "AWS::CloudWatch::Alarm")}
    assert set(listing["properties"]["alarms"]) == alarms


# ---------------------------------------------------------------- alarms


def resolve(value: Any, topic: str) -> Any:
    """A property as CloudFormation would deploy it, given the AlarmTopicArn parameter ("" when none)."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, when_true, when_false = value["Fn::If"]
        assert condition == "HasAlarmTopic"
        return resolve(when_true if topic else when_false, topic)
    if value == {"Ref": "AWS::NoValue"}:
        return None
    if value == {"Ref": "AlarmTopicArn"}:
        return topic
    if isinstance(value, list):
        return [resolve(item, topic) for item in value]
    return value


def test_the_topic_parameter_is_optional_and_must_be_an_sns_arn(document: dict[str, Any]) -> None:
    parameter = document["Parameters"]["AlarmTopicArn"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch(TOPIC)
    assert pattern.fullmatch("arn:aws-us-gov:sns:us-gov-west-1:123456789012:alarms")
    assert not pattern.fullmatch("opscore-alarms")
    assert not pattern.fullmatch("arn:aws:sqs:eu-west-1:123456789012:queue")
    assert document["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}


def test_each_alarm_notifies_the_topic_only_when_one_is_given(document: dict[str, Any]) -> None:
    alarms = resources(document, "AWS::CloudWatch::Alarm")
    assert {alarm["Properties"]["AlarmName"]["Fn::Sub"] for alarm in alarms.values()} == {
        "${AWS::StackName}-api-5xx-rate",
        "${AWS::StackName}-failed-executions",
        "${AWS::StackName}-function-errors",
        "${AWS::StackName}-function-throttles",
        "${AWS::StackName}-table-throttles",
        "${AWS::StackName}-async-failures",
    }
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == NOTIFY, name
        assert properties["OKActions"] == NOTIFY, name
        assert resolve(properties["AlarmActions"], TOPIC) == [TOPIC]
        assert resolve(properties["AlarmActions"], "") is None, "without a topic the property is left out"
        assert properties["TreatMissingData"] == "notBreaching", name
        assert "InsufficientDataActions" not in properties, name


def test_each_alarm_watches_one_well_formed_expression(document: dict[str, Any]) -> None:
    for name, alarm in resources(document, "AWS::CloudWatch::Alarm").items():
        metric_queries = alarm["Properties"]["Metrics"]
        (watched,) = [query for query in metric_queries if query["ReturnData"]]
        stats = {query["Id"]: query["MetricStat"] for query in metric_queries if "MetricStat" in query}
        assert len(stats) <= 10, f"{name}: an alarm's metric math reads at most 10 metrics"
        if watched["Expression"].startswith("SELECT "):
            # Metrics Insights: one query, with its period.
            assert len(metric_queries) == 1, name
            assert watched["Period"] == 300, name
            continue
        used = set(re.findall(r"\b([a-z][a-z_]*)\b", watched["Expression"])) - {"if", "sum", "max"}
        assert used == set(stats), f"{name}: the expression reads exactly the metrics fetched"
        for stat in stats.values():
            metric = stat["Metric"]
            assert metric["MetricName"] in AWS_METRICS[metric["Namespace"]], name
            assert stat["Period"] == 300, name


def test_the_function_alarms_cover_every_function_but_health(document: dict[str, Any]) -> None:
    alarms = resources(document, "AWS::CloudWatch::Alarm")
    for name, metric in (("FunctionErrorsAlarm", "Errors"), ("FunctionThrottlesAlarm", "Throttles")):
        stats = [
            query["MetricStat"]["Metric"] for query in alarms[name]["Properties"]["Metrics"] if "MetricStat" in query
        ]
        assert {m["MetricName"] for m in stats} == {metric}
        watched = {m["Dimensions"][0]["Value"]["Ref"] for m in stats}
        # Health reads nothing and answers through API Gateway (its failures are counted as 5xx); a new function
        # must find a place here, or a reason to stay out: 10 metrics is CloudWatch's limit for one alarm.
        assert watched == functions(document) - {"HealthFunction"}, name


def test_the_5xx_alarm_is_a_rate_and_the_executions_alarm_counts_failed_executions(document: dict[str, Any]) -> None:
    alarms = resources(document, "AWS::CloudWatch::Alarm")
    rate = alarms["Api5xxRateAlarm"]["Properties"]
    fetched = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in rate["Metrics"] if "MetricStat" in q}
    assert fetched == {"requests": "Count", "errors": "5XXError"}
    assert "100 * errors / requests" in next(q["Expression"] for q in rate["Metrics"] if q["ReturnData"])
    (executions,) = alarms["FailedExecutionsAlarm"]["Properties"]["Metrics"]
    assert executions["Expression"] == 'SELECT SUM(ExecutionsFailed) FROM SCHEMA("AWS/States", StateMachineArn)'


def test_readme_names_the_alarm_topic_parameter() -> None:
    deploy = (REPO / "README.md").read_text().split("## Deploy to AWS", 1)[1].split("\n## ", 1)[0]
    assert "AlarmTopicArn" in deploy
