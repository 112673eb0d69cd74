"""The bound on a task item's attempt history: what a record keeps of its error, its largest size, how many times each
task can run in a session (as the runner's graph lays the runs out), and the template check built on them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from opscore.core.contracts import canonical_json
from opscore.core.errors import ValidationFailed
from opscore.sessions.models import Problem, TaskStatus
from opscore.sessions.plan import TaskRoute, task_runs
from opscore.sessions.records import TaskRecord
from opscore.sessions.trace import attempt_record
from opscore.workflows.attempt_history import (
    ATTEMPT_MESSAGE_CHARS,
    ITEM_LIMIT_BYTES,
    LARGEST_PAYLOADS_BYTES,
    MAX_ATTEMPT_RECORD_BYTES,
    MAX_STORED_ATTEMPTS,
    OTHER_ATTRIBUTES_BYTES,
    run_counts,
    stored_attempts,
)
from opscore.workflows.templates import TaskTemplate, WorkflowTemplate, check_template

WIDE = "\U0001f600"  # 4 bytes in UTF-8
STAMP = "2026-12-01T09:00:00.123456Z"


def shared_fallback(namers: int, retries: int = 0, **fallback: Any) -> dict[str, Any]:
    """`namers` main-line tasks that all fall back to one task with `retries` retries."""
    return {
        "name": "shared",
        "tasks": [
            *({"id": f"t{number}", "action": "work", "fallback": "ask"} for number in range(namers)),
            {"id": "ask", "action": "human.ask", "fallback_only": True, "retry": {"max_retries": retries}, **fallback},
        ],
    }


def refused(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(ValidationFailed) as raised:
        check_template(WorkflowTemplate.model_validate(body))
    return [(problem.field, problem.type, problem.message) for problem in raised.value.details]


def test_the_bound_is_what_fits_beside_the_largest_payloads() -> None:
    room = ITEM_LIMIT_BYTES - LARGEST_PAYLOADS_BYTES - OTHER_ATTRIBUTES_BYTES
    assert (room, MAX_ATTEMPT_RECORD_BYTES, MAX_STORED_ATTEMPTS) == (96_896, 3_072, 31)
    # the published limit says the same
    assert f"at most {MAX_STORED_ATTEMPTS} in a session" in str(TaskTemplate.model_fields["fallback"].description)


def test_the_largest_attempt_record_keeps_a_cut_message_and_fits_its_size() -> None:
    # given an attempt failing with a message and a type far past what a record keeps, in 4-byte characters, with
    # every time and number in the record at its widest
    task = TaskRecord(
        session_id="0" * 32,
        index=99,
        attempts=9_999,
        attempt_started_at=STAMP,
        leased_at=STAMP,
        run_attempt=1,
        route_json=TaskRoute(
            state="s", index=99, id="t", action="a", timeout_seconds=1, delay_seconds=604_800
        ).model_dump_json(),
    )
    problem = Problem(type=WIDE * 256, message=WIDE * 2_048, task_id=f"{'0' * 32}-099", retryable=False)

    # when its record is built
    record = attempt_record(task, TaskStatus.TIMED_OUT, problem, STAMP, retry_at=STAMP)

    # then it keeps the start of the message, marked as cut, and, with its entry's key, fits the bound's record size
    assert record.error is not None
    assert len(record.error.message) == ATTEMPT_MESSAGE_CHARS
    assert record.error.message == WIDE * (ATTEMPT_MESSAGE_CHARS - 1) + "…"
    assert len(record.error.type) == 128
    stored = len(str(record.attempt)) + len(canonical_json(record.model_dump(mode="json")).encode()) + 1
    assert stored <= MAX_ATTEMPT_RECORD_BYTES, stored


def test_a_message_within_the_limit_is_kept_whole() -> None:
    task = TaskRecord(session_id="0" * 32, index=0, attempts=1, attempt_started_at=STAMP)
    problem = Problem(type="ToolError", message=WIDE * ATTEMPT_MESSAGE_CHARS)
    record = attempt_record(task, TaskStatus.FAILED, problem, STAMP)
    assert record.error == problem


@pytest.mark.parametrize(
    "body",
    [
        shared_fallback(3, retries=2),
        {
            "name": "chains",
            "tasks": [
                {"id": "a", "action": "x", "fallback": "f"},
                {"id": "b", "action": "x", "fallback": "f"},
                {"id": "c", "action": "x", "fallback": "g"},
                {"id": "f", "action": "x", "fallback": "g", "fallback_only": True},
                {"id": "g", "action": "x", "fallback": "h"},
                {"id": "h", "action": "x", "fallback_only": True},
                {"id": "unused", "action": "x", "fallback_only": True},
            ],
        },
    ],
)
def test_run_counts_are_the_runs_the_session_runner_has(body: dict[str, Any]) -> None:
    template = WorkflowTemplate.model_validate(body)
    runner = Counter(run.route.index for run in task_runs(template))
    assert run_counts(template) == [runner[index] for index in range(len(template.tasks))]


def test_a_chain_multiplies_the_runs_of_what_follows_it() -> None:
    template = WorkflowTemplate.model_validate(
        {
            "name": "chains",
            "tasks": [
                {"id": "a", "action": "x", "fallback": "f"},
                {"id": "b", "action": "x", "fallback": "f"},
                {"id": "f", "action": "x", "fallback": "g", "fallback_only": True, "retry": {"max_retries": 4}},
                {"id": "g", "action": "x", "retry": {"max_retries": 1}},
            ],
        }
    )
    # g: once on the main line, and once for each of f's two runs; f: 2 runs of 5 attempts
    assert run_counts(template) == [1, 1, 2, 3]
    assert stored_attempts(template) == [1, 1, 10, 6]


def test_a_shared_fallback_up_to_the_bound_is_accepted() -> None:
    check_template(WorkflowTemplate.model_validate(shared_fallback(MAX_STORED_ATTEMPTS)))
    check_template(WorkflowTemplate.model_validate(shared_fallback(2, retries=10)))  # 22 attempts


def test_the_fallback_that_takes_a_task_past_the_bound_is_named_with_the_limit() -> None:
    # 3 runs of 11 attempts: the third task naming it passes 31
    ((field, kind, message),) = refused(shared_fallback(3, retries=10))
    assert (field, kind) == ("tasks.2.fallback", "too_many_attempts")
    assert "'ask' could then run 3 times in one session, 33 attempts" in message
    assert "31 attempt records" in message
    assert "400 KB" in message
    ((field, _, _),) = refused(shared_fallback(MAX_STORED_ATTEMPTS + 1))
    assert field == f"tasks.{MAX_STORED_ATTEMPTS}.fallback"


def test_a_task_on_the_main_line_counts_its_own_run_first() -> None:
    body = {
        "name": "main",
        "tasks": [
            {"id": "a", "action": "x", "fallback": "b"},
            {"id": "c", "action": "x", "fallback": "b"},
            {"id": "b", "action": "x", "retry": {"max_retries": 10}},
        ],
    }
    ((field, _, message),) = refused(body)
    assert field == "tasks.1.fallback"  # its own run (11), a's (22), then c's (33)
    assert "33 attempts" in message


def test_a_chain_past_the_bound_names_the_fallback_that_multiplies_it() -> None:
    # f runs for 8 tasks, and g (4 attempts a run) once for each of f's runs: 32 attempts
    body = {
        "name": "chain",
        "tasks": [
            *({"id": f"t{number}", "action": "x", "fallback": "f"} for number in range(8)),
            {"id": "f", "action": "x", "fallback": "g", "fallback_only": True},
            {"id": "g", "action": "x", "fallback_only": True, "retry": {"max_retries": 3}},
        ],
    }
    ((field, _, message),) = refused(body)
    assert field == "tasks.8.fallback"
    assert "'g' could then run 8 times in one session, 32 attempts" in message


def test_an_inline_template_names_the_field_inside_the_body() -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_template(WorkflowTemplate.model_validate(shared_fallback(32)), prefix="template.")
    assert [problem.field for problem in raised.value.details] == ["template.tasks.31.fallback"]
