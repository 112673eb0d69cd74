"""Which results an attempt takes: `known_answer`, the rule behind POST .../tasks/{taskId}/result's repeats."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from opscore.core.errors import Conflict
from opscore.dispatch.errors import AttemptRequired, ResultConflict, TaskNotOpen
from opscore.dispatch.models import TaskResult
from opscore.dispatch.results import KnownAnswer, known_answer, outcome_of, runner_error
from opscore.sessions.errors import AGENT_FAILED_ERROR, RETRIED_ERRORS
from opscore.sessions.models import TaskStatus
from opscore.sessions.records import TaskRecord

SESSION = "0" * 32
TASK = f"{SESSION}-000"
DONE = TaskResult(status="succeeded", output={"n": 1})
DONE_JSON = '{"output":{"n":1},"status":"succeeded"}'
OTHER_JSON = '{"output":{"n":2},"status":"succeeded"}'
NOW = "2026-11-30T12:00:00.000000Z"


def task(status: TaskStatus, attempts: int = 1, **fields: object) -> TaskRecord:
    return TaskRecord(
        session_id=SESSION,
        index=0,
        status=status,
        attempts=attempts,
        dispatch_seq=attempts + 1,
        **fields,  # type: ignore[arg-type]
    )


def kept(json: str, attempt: int = 1, for_current: bool = True) -> dict[str, object]:
    return {"result_json": json, "result_attempt": attempt, "result_seq": (attempt + 1) if for_current else 1}


@pytest.mark.parametrize(
    ("record", "result", "answer"),
    [
        # a new result for the open attempt
        (task(TaskStatus.LEASED), DONE, None),
        (task(TaskStatus.LEASED), DONE.model_copy(update={"attempt": 1}), None),
        # the same result again, once recorded: answered, and the runner told again (the first call may have stopped
        # before it could; a closed token says it had heard)
        (task(TaskStatus.SUCCEEDED, **kept(DONE_JSON)), DONE, KnownAnswer(1, tell_again=True)),
        # the same result after the attempt moved on (its retry is queued)
        (task(TaskStatus.QUEUED, 2, **kept(DONE_JSON, 1, for_current=False)), DONE, KnownAnswer(1)),
        # a result in time
        (task(TaskStatus.LEASED, attempt_deadline="2026-11-30T12:00:00.000001Z"), DONE, None),
        # a late repeat for an earlier attempt, named by its attempt
        (
            task(TaskStatus.LEASED, 2, **kept(DONE_JSON, 1, for_current=False)),
            DONE.model_copy(update={"attempt": 1}),
            KnownAnswer(1),
        ),
    ],
)
def test_results_that_are_taken_or_answered_again(
    record: TaskRecord, result: TaskResult, answer: KnownAnswer | None
) -> None:
    assert known_answer(record, TASK, result, DONE_JSON, NOW) == answer


@pytest.mark.parametrize(
    ("record", "result", "refusal", "words"),
    [
        (task(TaskStatus.QUEUED), DONE, TaskNotOpen, "queued: lease it"),
        (task(TaskStatus.RETRYING), DONE, TaskNotOpen, "retrying: it is not waiting"),
        (
            task(TaskStatus.LEASED, 2),
            DONE.model_copy(update={"attempt": 1}),
            TaskNotOpen,
            "waiting for attempt 2, not 1",
        ),
        # a different result for an attempt already answered
        (task(TaskStatus.SUCCEEDED, **kept(OTHER_JSON)), DONE, ResultConflict, "a different result"),
        # the attempt's time in the runner ran out
        (task(TaskStatus.LEASED, attempt_deadline=NOW), DONE, TaskNotOpen, "timed out"),
        # the open attempt 2 is sent attempt 1's result without saying which attempt it is for
        (task(TaskStatus.LEASED, 2, **kept(DONE_JSON, 1, for_current=False)), DONE, AttemptRequired, '"attempt": 2'),
    ],
)
def test_results_that_are_refused(record: TaskRecord, result: TaskResult, refusal: type[Conflict], words: str) -> None:
    with pytest.raises(refusal, match=words):
        known_answer(record, TASK, result, DONE_JSON, NOW)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "succeeded"),
        ({"type": "upstream.timeout"}, "failed"),  # the task's own fault by default: its retries absorb it
        ({"type": "upstream.timeout", "fault": "task"}, "failed"),
        ({"type": "OutOfMemory", "fault": "agent"}, "counted"),  # the agent is unwell: counted toward quarantine
    ],
)
def test_a_failed_result_counts_against_its_agent_only_when_it_says_it_is_the_agents_fault(
    error: dict[str, str] | None, outcome: str
) -> None:
    result = TaskResult(status="failed", error=error) if error else DONE  # type: ignore[arg-type]
    assert outcome_of(result) == outcome


def test_the_default_fault_is_kept_as_absent_so_a_repeat_reads_the_same() -> None:
    with_default = TaskResult.model_validate({"status": "failed", "error": {"type": "E", "fault": "task"}})
    without = TaskResult.model_validate({"status": "failed", "error": {"type": "E"}})
    assert with_default.model_dump(exclude_none=True) == without.model_dump(exclude_none=True)


def test_the_default_retryable_is_kept_as_absent_so_a_repeat_reads_the_same() -> None:
    said = TaskResult.model_validate({"status": "failed", "error": {"type": "E", "retryable": True}})
    without = TaskResult.model_validate({"status": "failed", "error": {"type": "E"}})
    final = TaskResult.model_validate({"status": "failed", "error": {"type": "E", "retryable": False}})
    assert said.model_dump(exclude_none=True) == without.model_dump(exclude_none=True)
    assert final.model_dump(mode="json", exclude_none=True)["error"] == {"type": "E", "message": "", "retryable": False}


@pytest.mark.parametrize("value", ["false", 0, 1, None, [], {}])
def test_retryable_is_a_boolean(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        TaskResult.model_validate({"status": "failed", "error": {"type": "E", "retryable": value}})
    assert [problem["loc"] for problem in refused.value.errors()] == [("error", "retryable")]


def test_retryable_goes_with_a_failed_result_only() -> None:
    with pytest.raises(ValidationError, match="a succeeded result has no error"):
        TaskResult.model_validate({"status": "succeeded", "error": {"type": "E", "retryable": False}})


@pytest.mark.parametrize(
    ("error", "retried"),
    [({"type": "E"}, True), ({"type": "E", "retryable": True}, True), ({"type": "E", "retryable": False}, False)],
)
def test_the_runner_retries_a_failed_result_unless_it_says_it_is_not_worth_it(
    error: dict[str, object], retried: bool
) -> None:
    name = runner_error(TaskResult.model_validate({"status": "failed", "error": error}))
    assert (name in RETRIED_ERRORS) is retried
    assert name.startswith("OpsCore.")
    assert (name == AGENT_FAILED_ERROR) is retried


@pytest.mark.parametrize(("fault", "outcome"), [(None, "failed"), ("agent", "counted")])
def test_a_failure_not_worth_retrying_moves_the_agents_breaker_as_any_failure(fault: str | None, outcome: str) -> None:
    error = {"type": "E", "retryable": False} | ({"fault": fault} if fault else {})
    assert outcome_of(TaskResult.model_validate({"status": "failed", "error": error})) == outcome
