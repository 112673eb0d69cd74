"""How many attempt records one task item can keep, and the template check that keeps every task within that.

Each attempt of a task, over every run of it in a session, leaves a record in the history on the task's one DynamoDB
item. A task runs once on the main line (unless it is `fallback_only`) and once more for each run of a task that names
it as its fallback (so a fallback of a fallback runs once per run of that one, as opscore.sessions.plan lays the runs
out); each run makes up to `retry.max_retries` + 1 attempts. A record keeps at most ATTEMPT_MESSAGE_CHARS of its
error's message (the task's `error`, the result as sent and the log line keep it whole), which gives a record a largest
size; a template whose tasks could keep more records than fit on an item beside its largest inputs and outputs is
refused when it is stored, naming the fallback that takes a task past the bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opscore.core.errors import FieldProblem

if TYPE_CHECKING:
    from opscore.workflows.templates import WorkflowTemplate

# DynamoDB's 400 KB per item (attribute names included), counted as 400,000 bytes: a margin below 409,600.
ITEM_LIMIT_BYTES = 400_000
# The largest values on a task item: its input, the session's input, its output and the result as sent (each within
# 64 KiB; docs/security.md, Limits on input)...
LARGEST_PAYLOADS_BYTES = 4 * 64 * 1024
# ...and the rest at most: its last error and the error it stands in for (2,048 characters each, 8 KiB in 4-byte
# characters), the route its run was dispatched with, the runner's task token, the ids of the tasks it stood in for
# (at most 99 of 64 characters), its keys, counters and timestamps.
OTHER_ATTRIBUTES_BYTES = 40 * 1024
# What an attempt record keeps of its error: the first characters of the type and the message; a message cut ends
# with CUT_MARK (within the limit).
ATTEMPT_MESSAGE_CHARS = 512
ATTEMPT_ERROR_TYPE_CHARS = 128
CUT_MARK = "…"
# The largest record as stored, with its entry's key: its message and type at their limits in 4-byte characters,
# every timestamp set (tests/unit/test_attempt_history.py builds one and checks it fits).
MAX_ATTEMPT_RECORD_BYTES = 3 * 1024
# 31 records with the values above.
MAX_STORED_ATTEMPTS = (ITEM_LIMIT_BYTES - LARGEST_PAYLOADS_BYTES - OTHER_ATTRIBUTES_BYTES) // MAX_ATTEMPT_RECORD_BYTES


def kept_message(message: str) -> str:
    """An error message as an attempt record keeps it: whole up to ATTEMPT_MESSAGE_CHARS, else cut, ending in
    CUT_MARK."""
    if len(message) <= ATTEMPT_MESSAGE_CHARS:
        return message
    return message[: ATTEMPT_MESSAGE_CHARS - len(CUT_MARK)] + CUT_MARK


def run_counts(template: WorkflowTemplate) -> list[int]:
    """How many times each task (in template order) can run in one session, at most.

    The template's fallbacks must exist and end (check_template's other checks): the count follows them.
    """
    index_of: dict[str, int] = {}
    for index, task in enumerate(template.tasks):
        index_of.setdefault(task.id, index)  # the first task with an id defines it, as the runner's graph does
    named_by: list[list[int]] = [[] for _ in template.tasks]
    for index, task in enumerate(template.tasks):
        if task.fallback is not None:
            named_by[index_of[task.fallback]].append(index)
    runs: dict[int, int] = {}

    def runs_of(index: int) -> int:
        if index not in runs:
            own = 0 if template.tasks[index].fallback_only else 1
            runs[index] = own + sum(runs_of(naming) for naming in named_by[index])
        return runs[index]

    return [runs_of(index) for index in range(len(template.tasks))]


def stored_attempts(template: WorkflowTemplate) -> list[int]:
    """The most attempt records each task's item can keep in one session: its runs times its attempts per run."""
    return [
        runs * (task.retry.max_retries + 1) for runs, task in zip(run_counts(template), template.tasks, strict=True)
    ]


def history_problems(template: WorkflowTemplate, prefix: str = "") -> list[FieldProblem]:
    """One problem per task that could keep more than MAX_STORED_ATTEMPTS records, at the `fallback` of the task that
    takes it past the bound (counting its main-line run first, then the tasks naming it in template order)."""
    runs = run_counts(template)
    problems = []
    for index, task in enumerate(template.tasks):
        per_run = task.retry.max_retries + 1
        if runs[index] * per_run <= MAX_STORED_ATTEMPTS:
            continue
        counted = 0 if task.fallback_only else per_run
        for naming, other in enumerate(template.tasks):
            if other.fallback != task.id:
                continue
            counted += runs[naming] * per_run
            if counted > MAX_STORED_ATTEMPTS:
                problems.append(_too_many(f"{prefix}tasks.{naming}.fallback", task.id, runs[index], per_run))
                break
    return problems


def _too_many(field: str, task_id: str, runs: int, per_run: int) -> FieldProblem:
    return FieldProblem(
        field,
        f"{task_id!r} could then run {runs} times in one session, {runs * per_run} attempts with its retries "
        f"({per_run} per run): over the {MAX_STORED_ATTEMPTS} attempt records a task keeps within DynamoDB's 400 KB "
        "item limit; name another fallback, or lower its retry.max_retries",
        type="too_many_attempts",
    )
