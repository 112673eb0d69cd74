"""The session runner generated for a workflow template (opscore.sessions.definition), read as Step Functions reads it.

What is checked: where a session starts; each task run as a `.waitForTaskToken` Task state named after its task, with
its timeout, its route and the execution input it reads; the template's retry policy as a native Retry on Ops-Core's
retried failures only; each Catch (cancel, fallback state or its Wait, Record Failure); where a fallback goes on; that
every transition names a state, within Step Functions' 80 characters; that task inputs and priorities stay out of the
definition; and the content-addressed machine name.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from opscore.core.errors import ValidationFailed
from opscore.sessions.definition import (
    RECORD_FAILURE,
    SESSION_CANCELLED,
    RunnerTargets,
    definition_text,
    machine_name,
    runner_definition,
)
from opscore.sessions.errors import (
    AGENT_FAILED_FINAL_ERROR,
    AGENT_QUARANTINED_ERROR,
    RETRIED_ERRORS,
    SESSION_CANCELLED_ERROR,
)
from opscore.sessions.plan import task_runs
from opscore.workflows.templates import WorkflowTemplate, check_template

DISPATCH_ARN = "arn:aws:lambda:us-east-1:123456789012:function:opscore-dispatch"
TARGETS = RunnerTargets(DISPATCH_ARN, "opscore-table")
WAIT_FOR_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"
NEVER_RETRIED = (AGENT_QUARANTINED_ERROR, SESSION_CANCELLED_ERROR, AGENT_FAILED_FINAL_ERROR)
# Retrier wildcards: either would retry a quarantine, a cancel or a failure not worth retrying too (States.TaskFailed
# matches all but a timeout).
WILDCARDS = ("States.ALL", "States.TaskFailed")
STEP_FUNCTIONS_NAME_LIMIT = 80
STEP_FUNCTIONS_DEFINITION_LIMIT = 1_048_576  # bytes: a hard quota

TRIAGE: dict[str, Any] = {
    "name": "triage",
    "tasks": [
        {
            "id": "fetch",
            "action": "web.fetch",
            "input": {"url": "https://example.com/report"},
            "delay_seconds": 3,
            "timeout_seconds": 120,
            "retry": {"max_retries": 2, "backoff_seconds": 1, "backoff_rate": 2.0},
            "fallback": "notify",
        },
        {"id": "summarize", "action": "llm.summarize", "priority": 8, "timeout_seconds": 600},
        {"id": "notify", "action": "human.notify", "fallback_only": True},
    ],
}


def template(*tasks: dict[str, Any], name: str = "triage") -> WorkflowTemplate:
    """A valid template: the model's checks and check_template's."""
    parsed = WorkflowTemplate.model_validate({"name": name, "tasks": list(tasks)})
    check_template(parsed)
    return parsed


def triage(**changes: dict[str, Any]) -> WorkflowTemplate:
    """The triage template, with some of its tasks (by id) changed."""
    return template(*({**task, **changes.get(task["id"], {})} for task in TRIAGE["tasks"]))


def states_of(workflow: WorkflowTemplate) -> dict[str, Any]:
    states: dict[str, Any] = runner_definition(workflow, TARGETS)["States"]
    return states


def dispatch(state: dict[str, Any]) -> dict[str, Any]:
    route: dict[str, Any] = state["Parameters"]["Payload"]["dispatch"]
    return route


def task_run_states(states: dict[str, Any]) -> dict[str, Any]:
    """The states that dispatch a task run (not the runner's own Record Failure and the like)."""
    return {name: state for name, state in states.items() if state.get("Resource") == WAIT_FOR_TOKEN}


def catch_target(state: dict[str, Any], error: str) -> str:
    target: str = next(catcher["Next"] for catcher in state["Catch"] if error in catcher["ErrorEquals"])
    return target


def targets(state: dict[str, Any]) -> list[str]:
    """Every state a state can move to."""
    found = [catcher["Next"] for catcher in state.get("Catch", [])]
    return [state["Next"], *found] if "Next" in state else found


def assert_well_formed(definition: dict[str, Any]) -> None:
    """StartAt and every Next and Catch name a state; a state that goes on has a Next or ends, not both."""
    states = definition["States"]
    assert definition["StartAt"] in states
    for name, state in states.items():
        assert len(name) <= STEP_FUNCTIONS_NAME_LIMIT, name
        for target in targets(state):
            assert target in states, f"{name!r} moves to {target!r}, which is not a state"
        if state["Type"] in {"Task", "Wait"}:
            assert ("Next" in state) != bool(state.get("End")), name


# Where a session starts.


def test_a_session_starts_with_the_wait_before_a_delayed_first_task() -> None:
    definition = runner_definition(triage(), TARGETS)
    assert definition["StartAt"] == "Wait before fetch"
    assert definition["States"]["Wait before fetch"] == {"Type": "Wait", "Seconds": 3, "Next": "fetch"}


def test_a_session_starts_with_the_first_main_line_task_when_it_has_no_delay() -> None:
    workflow = template(
        {"id": "notify", "action": "human.notify", "fallback_only": True},
        {"id": "fetch", "action": "web.fetch", "fallback": "notify"},
    )
    definition = runner_definition(workflow, TARGETS)
    assert definition["StartAt"] == "fetch"
    assert not any(name.startswith("Wait before") for name in definition["States"])
    fetch = definition["States"]["fetch"]
    assert (dispatch(fetch)["index"], dispatch(fetch)["begins"]) == (1, True)
    assert fetch["Parameters"]["Payload"]["given.$"] == "$.tasks[1]"


# Each task run's Task state.


def test_each_main_line_task_is_a_task_state_named_after_its_id() -> None:
    states = states_of(triage())
    assert set(task_run_states(states)) == {"fetch", "summarize", "notify (fallback for fetch)"}
    assert "notify" not in states  # a fallback_only task runs only in place of another
    for index, (name, action, timeout) in enumerate([("fetch", "web.fetch", 120), ("summarize", "llm.summarize", 600)]):
        state = states[name]
        assert state["Type"] == "Task"
        assert state["Resource"] == WAIT_FOR_TOKEN
        assert state["TimeoutSeconds"] == timeout
        assert state["Parameters"]["FunctionName"] == DISPATCH_ARN
        payload = state["Parameters"]["Payload"]
        assert payload["given.$"] == f"$.tasks[{index}]"
        assert payload["token.$"] == "$$.Task.Token"
        route = payload["dispatch"]
        assert (route["state"], route["index"], route["id"], route["action"]) == (name, index, name, action)
        assert route["timeout_seconds"] == timeout
        assert route["fallback_for"] is None
        assert route["begins"] is (index == 0)


def test_the_route_names_what_runs_after_a_success_and_after_a_final_failure() -> None:
    states = states_of(triage(notify={"delay_seconds": 30}))
    fetch, summarize = dispatch(states["fetch"]), dispatch(states["summarize"])
    assert fetch["then"] == {"index": 1, "id": "summarize", "delay_seconds": 0}
    assert fetch["fallback"] == {"index": 2, "id": "notify", "delay_seconds": 30}
    assert fetch["retry"] == {"max_retries": 2, "backoff_seconds": 1, "backoff_rate": 2.0}
    assert (summarize["then"], summarize["fallback"]) == (None, None)


def test_the_task_after_the_first_goes_on_by_next_and_the_last_ends() -> None:
    states = states_of(triage())
    assert states["fetch"]["Next"] == "summarize"
    assert "End" not in states["fetch"]
    assert states["summarize"]["End"] is True
    assert "Next" not in states["summarize"]


# Retries.


def test_the_retry_policy_is_a_retrier_on_exactly_the_retried_errors() -> None:
    retriers = states_of(triage())["fetch"]["Retry"]
    opscore = [retrier for retrier in retriers if set(retrier["ErrorEquals"]) & set(RETRIED_ERRORS)]
    assert len(opscore) == 1
    assert sorted(opscore[0]["ErrorEquals"]) == sorted(RETRIED_ERRORS)
    assert (opscore[0]["IntervalSeconds"], opscore[0]["MaxAttempts"], opscore[0]["BackoffRate"]) == (1, 2, 2.0)
    lambda_retriers = [retrier for retrier in retriers if "Lambda.ServiceException" in retrier["ErrorEquals"]]
    assert len(lambda_retriers) == 1
    assert "Lambda.TooManyRequestsException" in lambda_retriers[0]["ErrorEquals"]
    assert len(retriers) == 2


@pytest.mark.parametrize(
    ("retry", "interval", "attempts", "rate"),
    [
        ({"max_retries": 3, "backoff_seconds": 7, "backoff_rate": 1.5}, 7, 3, 1.5),
        ({"max_retries": 1, "backoff_seconds": 0, "backoff_rate": 1.0}, 1, 1, 1.0),  # Step Functions waits >= 1 s
        ({"max_retries": 10, "backoff_seconds": 3600, "backoff_rate": 10.0}, 3600, 10, 10.0),
    ],
)
def test_the_retrier_takes_its_timing_from_the_template(
    retry: dict[str, Any], interval: int, attempts: int, rate: float
) -> None:
    retriers = states_of(triage(fetch={"retry": retry}))["fetch"]["Retry"]
    opscore = next(retrier for retrier in retriers if RETRIED_ERRORS[0] in retrier["ErrorEquals"])
    assert (opscore["IntervalSeconds"], opscore["MaxAttempts"], opscore["BackoffRate"]) == (interval, attempts, rate)


def test_without_retries_only_lambda_failures_are_retried() -> None:
    retriers = states_of(triage())["summarize"]["Retry"]  # max_retries 0
    assert retriers, "Lambda's transient failures are always retried"
    for retrier in retriers:
        assert not set(retrier["ErrorEquals"]) & set(RETRIED_ERRORS)
        assert "Lambda.ServiceException" in retrier["ErrorEquals"]


def test_a_quarantine_a_cancel_or_a_failure_not_worth_retrying_is_never_retried() -> None:
    workflow = triage(summarize={"fallback": "notify", "retry": {"max_retries": 5}})
    for name, state in task_run_states(states_of(workflow)).items():
        for retrier in state["Retry"]:
            for error in (*NEVER_RETRIED, *WILDCARDS):
                assert error not in retrier["ErrorEquals"], f"{name} retries {error}"


# Catches and fallbacks.


def test_a_cancel_ends_the_session_and_other_failures_go_to_the_fallback_or_record_failure() -> None:
    states = states_of(triage())
    for name in ("fetch", "summarize", "notify (fallback for fetch)"):
        catchers = states[name]["Catch"]
        # The cancel catcher comes first: Step Functions takes the first catcher that matches.
        assert catchers[0]["ErrorEquals"] == [SESSION_CANCELLED_ERROR]
        assert catchers[0]["Next"] == SESSION_CANCELLED
        assert catchers[-1]["ErrorEquals"] == ["States.ALL"]
    assert states[SESSION_CANCELLED]["Type"] == "Succeed"
    assert catch_target(states["fetch"], "States.ALL") == "notify (fallback for fetch)"
    assert catch_target(states["summarize"], "States.ALL") == RECORD_FAILURE
    assert catch_target(states["notify (fallback for fetch)"], "States.ALL") == RECORD_FAILURE
    assert states[RECORD_FAILURE]["Type"] == "Task"


def test_a_fallback_runs_in_its_own_state_and_goes_on_after_the_task_it_stands_in_for() -> None:
    states = states_of(triage(summarize={"fallback": "notify"}))
    for_fetch, for_summarize = states["notify (fallback for fetch)"], states["notify (fallback for summarize)"]
    assert for_fetch["Resource"] == WAIT_FOR_TOKEN
    assert for_fetch["Next"] == "summarize"
    assert for_summarize["End"] is True
    route = dispatch(for_fetch)
    assert (route["index"], route["id"], route["action"], route["begins"]) == (2, "notify", "human.notify", False)
    assert route["fallback_for"] == {"index": 0, "id": "fetch"}
    assert route["then"] == {"index": 1, "id": "summarize", "delay_seconds": 0}
    assert dispatch(for_summarize)["fallback_for"] == {"index": 1, "id": "summarize"}
    assert dispatch(for_summarize)["then"] is None
    assert for_fetch["Parameters"]["Payload"]["given.$"] == "$.tasks[2]"


def test_a_delayed_fallback_is_entered_through_its_wait() -> None:
    states = states_of(triage(notify={"delay_seconds": 30}))
    assert catch_target(states["fetch"], "States.ALL") == "Wait before notify (fallback for fetch)"
    assert states["Wait before notify (fallback for fetch)"] == {
        "Type": "Wait",
        "Seconds": 30,
        "Next": "notify (fallback for fetch)",
    }


def test_a_fallback_of_a_fallback_chains() -> None:
    workflow = template(
        {"id": "probe", "action": "net.probe", "fallback": "retry-probe"},
        {"id": "report", "action": "doc.report"},
        {"id": "retry-probe", "action": "net.probe", "fallback_only": True, "fallback": "page"},
        {"id": "page", "action": "human.page", "fallback_only": True},
    )
    states = states_of(workflow)
    assert catch_target(states["probe"], "States.ALL") == "retry-probe (fallback for probe)"
    second = states["retry-probe (fallback for probe)"]
    assert catch_target(second, "States.ALL") == "page (fallback for retry-probe)"
    assert second["Next"] == "report"
    last = states["page (fallback for retry-probe)"]
    assert last["Next"] == "report"  # the chain goes on after the main-line task it replaces
    assert catch_target(last, "States.ALL") == RECORD_FAILURE
    assert dispatch(last)["fallback_for"] == {"index": 2, "id": "retry-probe"}
    assert dispatch(last)["then"] == {"index": 1, "id": "report", "delay_seconds": 0}
    assert catch_target(states["report"], "States.ALL") == RECORD_FAILURE


def test_a_fallback_shared_by_two_tasks_gets_a_state_for_each() -> None:
    workflow = template(
        {"id": "a", "action": "x", "fallback": "f"},
        {"id": "b", "action": "x", "fallback": "f"},
        {"id": "c", "action": "x"},
        {"id": "f", "action": "x", "fallback_only": True},
    )
    states = states_of(workflow)
    for_a, for_b = catch_target(states["a"], "States.ALL"), catch_target(states["b"], "States.ALL")
    assert (for_a, for_b) == ("f (fallback for a)", "f (fallback for b)")
    assert (states[for_a]["Next"], states[for_b]["Next"]) == ("b", "c")
    assert (dispatch(states[for_a])["fallback_for"]["id"], dispatch(states[for_b])["fallback_for"]["id"]) == ("a", "b")


# The graph as a whole.

LONG = "x" * 63  # with one more character, a 64-character id: the longest a template allows
GRAPHS = {
    "triage": triage(),
    "delays and shared fallbacks": triage(
        fetch={"delay_seconds": 0}, summarize={"fallback": "notify", "delay_seconds": 9}, notify={"delay_seconds": 5}
    ),
    "chain": template(
        {"id": "a", "action": "x", "fallback": "b"},
        {"id": "b", "action": "x", "fallback": "c", "fallback_only": True},
        {"id": "c", "action": "x", "fallback_only": True},
        {"id": "d", "action": "x", "fallback": "c"},
    ),
    "fallback on the main line": template(
        {"id": "a", "action": "x", "fallback": "b"},
        {"id": "b", "action": "x", "delay_seconds": 4},
    ),
    "64-character ids": template(
        {"id": LONG + "a", "action": "x", "fallback": LONG + "f"},
        {"id": LONG + "b", "action": "x", "fallback": LONG + "f"},
        {"id": LONG + "f", "action": "x", "fallback_only": True, "fallback": LONG + "g"},
        {"id": LONG + "g", "action": "x", "fallback_only": True},
    ),
}


@pytest.mark.parametrize("workflow", GRAPHS.values(), ids=GRAPHS.keys())
def test_every_transition_names_a_state_of_at_most_80_characters(workflow: WorkflowTemplate) -> None:
    definition = runner_definition(workflow, TARGETS)
    assert_well_formed(definition)
    # One Task state per task run: no run lost to a name another run took.
    runs = task_runs(workflow)
    dispatched = task_run_states(definition["States"])
    assert len(dispatched) == len(runs)
    assert {name: dispatch(state)["state"] for name, state in dispatched.items()} == {name: name for name in dispatched}


def test_64_character_ids_give_distinct_state_names_within_80_characters() -> None:
    workflow = GRAPHS["64-character ids"]
    states = states_of(workflow)
    dispatched = task_run_states(states)
    # a, b, f for a, f for b, g for f (twice: once per run of f).
    assert len(dispatched) == 6
    assert all(len(name) <= STEP_FUNCTIONS_NAME_LIMIT for name in states)
    for_a = catch_target(states[LONG + "a"], "States.ALL")
    for_b = catch_target(states[LONG + "b"], "States.ALL")
    assert for_a != for_b
    assert (dispatch(states[for_a])["fallback_for"]["id"], dispatch(states[for_b])["fallback_for"]["id"]) == (
        LONG + "a",
        LONG + "b",
    )
    assert (states[for_a]["Next"], states[for_b].get("End")) == (LONG + "b", True)
    chained = {catch_target(states[for_a], "States.ALL"), catch_target(states[for_b], "States.ALL")}
    assert len(chained) == 2
    assert {dispatch(states[name])["id"] for name in chained} == {LONG + "g"}


def test_the_definition_is_json_without_task_inputs_or_priorities() -> None:
    secret = "input-only-in-the-execution-7f3a"
    workflow = triage(fetch={"input": {"token": secret}, "priority": 9}, summarize={"priority": 2})
    definition = runner_definition(workflow, TARGETS)
    text = definition_text(definition)
    assert json.loads(text) == definition
    assert json.loads(json.dumps(definition)) == definition
    assert secret not in text
    assert '"priority"' not in text
    assert '"input"' not in text
    plain = triage(fetch={"input": {}, "priority": None}, summarize={"priority": None})
    assert runner_definition(plain, TARGETS) == definition


def test_the_definition_is_a_pure_function_of_the_template_and_targets() -> None:
    assert runner_definition(triage(), TARGETS) == runner_definition(triage(), TARGETS)
    other = RunnerTargets("arn:aws:lambda:eu-west-1:210987654321:function:other", "other-table")
    assert definition_text(runner_definition(triage(), other)) != definition_text(runner_definition(triage(), TARGETS))
    assert states_of(triage())["Record Runner Failure"]["Parameters"]["TableName"] == "opscore-table"


# The machine's name.


def digest(definition: dict[str, Any]) -> str:
    return hashlib.sha256(definition_text(definition).encode()).hexdigest()[:16]


def test_the_machine_name_is_prefix_workflow_and_the_definition_hash() -> None:
    definition = runner_definition(triage(), TARGETS)
    name = machine_name("opscore-dev", "triage", definition)
    assert name == f"opscore-dev-triage-{digest(definition)}"
    assert name == machine_name("opscore-dev", "triage", runner_definition(triage(), TARGETS))
    assert len(name) <= STEP_FUNCTIONS_NAME_LIMIT


def test_the_machine_name_changes_with_the_definition_only() -> None:
    base = machine_name("opscore", "triage", runner_definition(triage(), TARGETS))
    longer = machine_name("opscore", "triage", runner_definition(triage(fetch={"timeout_seconds": 121}), TARGETS))
    more_retries = runner_definition(triage(fetch={"retry": {"max_retries": 3}}), TARGETS)
    assert longer != base
    assert machine_name("opscore", "triage", more_retries) not in {base, longer}
    reprioritised = triage(fetch={"input": {"url": "https://example.org"}, "priority": 1}, summarize={"priority": 0})
    assert machine_name("opscore", "triage", runner_definition(reprioritised, TARGETS)) == base


def test_a_64_character_workflow_name_is_cut_but_the_hash_is_kept() -> None:
    workflow = "nightly-" * 8  # 64 characters, the longest a workflow name may be
    definition = runner_definition(template(*TRIAGE["tasks"], name=workflow), TARGETS)
    name = machine_name("opscore-stage1", workflow, definition)
    # 80 - "opscore-stage1-" - "-<16 hex>" leaves 48 characters, cut at a dash, which is dropped.
    assert name == "opscore-stage1-" + "nightly-" * 5 + "nightly-" + digest(definition)
    assert len(name) <= STEP_FUNCTIONS_NAME_LIMIT
    assert re.fullmatch(r"opscore-stage1-[a-z-]+-[0-9a-f]{16}", name)
    assert "--" not in name


def test_a_delayed_task_after_the_first_is_entered_through_its_wait() -> None:
    states = states_of(triage(summarize={"delay_seconds": 60}))
    assert states["Wait before summarize"] == {"Type": "Wait", "Seconds": 60, "Next": "summarize"}
    assert states["fetch"]["Next"] == "Wait before summarize"
    assert states["notify (fallback for fetch)"]["Next"] == "Wait before summarize"


def test_delayed_fallbacks_of_long_ids_each_get_their_own_wait() -> None:
    fallback, first, second = "f" * 30, "a" * 29 + "1", "a" * 29 + "2"
    workflow = template(
        {"id": first, "action": "x", "fallback": fallback},
        {"id": second, "action": "x", "fallback": fallback},
        {"id": fallback, "action": "x", "fallback_only": True, "delay_seconds": 5},
    )
    states = states_of(workflow)
    entries = [catch_target(states[name], "States.ALL") for name in (first, second)]
    assert entries[0] != entries[1]
    assert [dispatch(states[states[entry]["Next"]])["fallback_for"]["id"] for entry in entries] == [first, second]


def test_a_template_whose_runner_would_pass_step_functions_size_quota_is_refused_naming_its_tasks() -> None:
    # 31 tasks falling back into a chain of 69: the chain repeats per task that enters it (2,170 task runs), while each
    # task runs at most 31 times, within its attempt history's bound.
    workflow = template(
        *({"id": f"t{i}", "action": "x", "fallback": "f0"} for i in range(31)),
        *(
            {"id": f"f{i}", "action": "x", "fallback_only": True, "fallback": f"f{i + 1}" if i < 68 else None}
            for i in range(69)
        ),
    )
    with pytest.raises(ValidationFailed) as refused:
        runner_definition(workflow, TARGETS)
    (problem,) = refused.value.details
    assert (problem.field, problem.type) == ("tasks", "too_large")
    assert "1048576" in problem.message


def test_the_largest_template_without_fallbacks_fits_step_functions_size_quota() -> None:
    workflow = template(*({"id": f"t{i}" * 8, "action": "x" * 128, "delay_seconds": 1} for i in range(100)))
    size = len(definition_text(runner_definition(workflow, TARGETS)).encode())
    assert size <= STEP_FUNCTIONS_DEFINITION_LIMIT
