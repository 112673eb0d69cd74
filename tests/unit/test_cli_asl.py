"""`opscore asl FILE`: the state machine a workflow template would get, checked as the API checks the template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from opscore.sessions.definition import RunnerTargets, machine_name, runner_definition
from opscore.workflows.templates import WorkflowTemplate
from opscore_tools.cli import app

ROLE_ARN = "arn:aws:iam::123456789012:role/opscore-SessionRunnerRole-AbC123"
runner = CliRunner()  # typer's runner keeps stdout and stderr apart

TRIAGE_YAML = """\
name: triage
tasks:
  - id: fetch
    action: web.fetch
    delay_seconds: 5
    retry: {max_retries: 2, backoff_seconds: 3}
    fallback: notify
  - id: summarize
    action: llm.summarize
  - id: notify
    action: human.notify
    fallback_only: true
"""
TRIAGE: dict[str, Any] = {
    "name": "triage",
    "tasks": [
        {
            "id": "fetch",
            "action": "web.fetch",
            "delay_seconds": 5,
            "retry": {"max_retries": 2, "backoff_seconds": 3},
            "fallback": "notify",
        },
        {"id": "summarize", "action": "llm.summarize"},
        {"id": "notify", "action": "human.notify", "fallback_only": True},
    ],
}
PLACEHOLDERS = RunnerTargets("${DispatchFunctionArn}", "${TableName}")
DISPATCH_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:opscore-dispatch"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def expected(targets: RunnerTargets) -> dict[str, Any]:
    return runner_definition(WorkflowTemplate.model_validate(TRIAGE), targets)


@pytest.mark.parametrize(("name", "text"), [("triage.yaml", TRIAGE_YAML), ("triage.json", json.dumps(TRIAGE))])
def test_prints_the_definition_with_placeholders_and_its_machine_name(tmp_path: Path, name: str, text: str) -> None:
    result = runner.invoke(app, ["asl", str(write(tmp_path, name, text))])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)  # stdout is the definition alone
    definition = expected(PLACEHOLDERS)
    assert (printed["StartAt"], printed["States"]) == (definition["StartAt"], definition["States"])
    assert printed["StartAt"] == "Wait before fetch"
    assert printed["States"]["fetch"]["Parameters"]["FunctionName"] == "${DispatchFunctionArn}"
    assert printed["States"]["Record Runner Failure"]["Parameters"]["TableName"] == "${TableName}"
    assert result.stderr.splitlines() == [f"state machine: {machine_name('opscore', 'triage', definition)}"]


def test_the_stacks_values_fill_the_definition_and_name_the_machine(tmp_path: Path) -> None:
    path = write(tmp_path, "triage.yml", TRIAGE_YAML)
    result = runner.invoke(
        app,
        [
            "asl",
            str(path),
            "--dispatch-function-arn",
            DISPATCH_ARN,
            "--table-name",
            "opscore-prod",
            "--name-prefix",
            "ops-prod",
            "--role-arn",
            ROLE_ARN,
        ],
    )

    assert result.exit_code == 0, result.output
    definition = expected(RunnerTargets(DISPATCH_ARN, "opscore-prod"))
    printed = json.loads(result.stdout)
    assert printed["States"] == definition["States"]
    assert printed["States"]["Record Failure"]["Resource"] == DISPATCH_ARN
    assert "${" not in result.stdout
    name = machine_name("ops-prod", "triage", definition, ROLE_ARN)
    assert name.startswith("ops-prod-triage-")
    assert name != machine_name("ops-prod", "triage", definition), "the role is part of the name's hash"
    assert result.stderr.splitlines() == [f"state machine: {name}"]


def test_a_template_too_large_for_one_state_machine_is_refused_as_the_api_refuses_it(tmp_path: Path) -> None:
    # 31 tasks falling back into a chain of 69 (each task within its attempt bound): 2,170 task runs
    chain = [{"id": f"t{i}", "action": "x", "fallback": "f0"} for i in range(31)] + [
        {"id": f"f{i}", "action": "x", "fallback_only": True, "fallback": f"f{i + 1}" if i < 68 else None}
        for i in range(69)
    ]
    result = runner.invoke(app, ["asl", str(write(tmp_path, "chain.json", json.dumps({"name": "c", "tasks": chain})))])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "tasks: its session runner would be" in result.stderr


def test_an_invalid_template_names_each_problem_by_path(tmp_path: Path) -> None:
    broken = {**TRIAGE, "tasks": [{**TRIAGE["tasks"][0], "fallback": "nobody"}, *TRIAGE["tasks"][1:]]}
    result = runner.invoke(app, ["asl", str(write(tmp_path, "triage.json", json.dumps(broken)))])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "tasks.0.fallback: 'nobody' is not a task of this template" in result.stderr


def test_model_problems_are_reported_as_the_api_reports_them(tmp_path: Path) -> None:
    text = "name: Triage!\ntasks:\n  - {id: fetch, action: web.fetch, priority: 12, colour: blue}\n"
    result = runner.invoke(app, ["asl", str(write(tmp_path, "triage.yaml", text))])

    assert result.exit_code == 2
    problems = result.stderr.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in problems] == ["name", "tasks.0.priority", "tasks.0.colour"]


def test_yaml_the_api_refuses_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["asl", str(write(tmp_path, "triage.yaml", "name: &n triage\ntasks: *n\n"))])

    assert result.exit_code == 2
    assert "anchors and aliases" in result.stderr


@pytest.mark.parametrize("name", ["missing.yaml", "."])
def test_a_file_that_cannot_be_read_exits_2(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    result = runner.invoke(app, ["asl", str(path)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"cannot read {path}" in result.stderr
