"""References in a task's input: values taken, when the task is queued, from the session's input, from the output of
a task that ran before it, and, in a fallback, from the task it stands in for.

A reference is an object whose key is `$from`, anywhere in a task's `input` (nested objects and lists included):

    input:
      url: {$from: input.url}                          # the session's input (the trigger's)
      text: {$from: tasks.fetch.output.body}           # an earlier task's output
      pages: {$from: tasks.fetch.output.pages.0}       # a number picks a list's item
      title: {$from: [tasks.fetch.output.title, tasks.fetch_cached.output.title], default: null}
      why: {$from: failed.error.message}               # in a fallback: the error of the task it stands in for

`$from` is one path or a list of them (the first that has a value wins); `default` is used when none has one. A path
starts at `input`, `tasks.<id>.output`, `failed.error` (`type`, `message`) or `failed.task` (the failed task's id),
and goes on by keys of letters, digits, `_` and `-`. The reference is replaced by the value, whatever its type.

When the template is stored, each reference is checked: its shape, its paths, that the task it names exists and can
run before the task that reads it (on some path through the main line and the fallbacks), and that `failed` is read
only by a task that runs as a fallback. At run time a path may still find nothing (the task before failed and its
fallback ran instead, or its output lacks the key): the attempt then fails with OpsCore.InputMissing, and the task's
retries and fallback apply as for any failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from opscore.core.errors import FieldProblem

REFERENCE_KEY = "$from"
DEFAULT_KEY = "default"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
ROOTS = ("input", "tasks.<id>.output", "failed.error", "failed.task")


class Unresolved(Exception):
    """A reference found no value (and has no default): what the attempt's error says."""


class Path(NamedTuple):
    """One parsed `$from` path: where it starts (`input`, `output` of `task`, `failed`) and the keys after it."""

    text: str
    root: str
    task: str | None
    keys: tuple[str, ...]


class Reference(NamedTuple):
    paths: tuple[Path, ...]
    default: Any
    has_default: bool


class Sources(NamedTuple):
    """What references read at run time: the session's input, each ended task's output by id, and the failed task
    a fallback stands in for (`{"task": id, "error": {"type", "message"}}`), if any."""

    session_input: Mapping[str, Any]
    outputs: Mapping[str, Mapping[str, Any]]
    failed: Mapping[str, Any] | None = None


class Found(NamedTuple):
    """A reference met in a task's input: where (dotted, from the input) and what it says."""

    where: str
    reference: Reference | None
    problems: list[FieldProblem]


def has_references(value: Any) -> bool:
    """Whether anything in `value` is a reference: the dispatch reads the session's tasks only then."""
    if isinstance(value, dict):
        return REFERENCE_KEY in value or any(has_references(item) for item in value.values())
    if isinstance(value, list):
        return any(has_references(item) for item in value)
    return False


def input_problems(value: dict[str, Any], where: str) -> Iterator[Found]:
    """Each reference in a task's input, parsed, with the problems of its shape; the input itself is no reference."""
    if REFERENCE_KEY in value:
        problem = FieldProblem(
            f"{where}.{REFERENCE_KEY}",
            "a reference stands for a value inside the input, not for the whole input: give it a key, "
            'such as {"page": {"$from": ...}}',
            type="malformed_reference",
        )
        yield Found(where, None, [problem])
        return
    yield from references_in(value, where)


def references_in(value: Any, where: str = "input") -> Iterator[Found]:
    """Each reference in `value`, parsed, with the problems of its shape."""
    if isinstance(value, dict):
        if REFERENCE_KEY in value:
            yield _parse(value, where)
            return
        for key, item in value.items():
            yield from references_in(item, f"{where}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from references_in(item, f"{where}.{position}")


def _parse(value: dict[str, Any], where: str) -> Found:
    problems = [
        FieldProblem(
            f"{where}.{key}",
            f"a reference has only {REFERENCE_KEY!r} and {DEFAULT_KEY!r}",
            type="malformed_reference",
        )
        for key in value
        if key not in {REFERENCE_KEY, DEFAULT_KEY}
    ]
    if has_references(value.get(DEFAULT_KEY)):
        message = "a default is taken as it is: it holds no reference"
        problems.append(FieldProblem(f"{where}.{DEFAULT_KEY}", message, type="malformed_reference"))
    paths = _paths(value[REFERENCE_KEY], f"{where}.{REFERENCE_KEY}", problems)
    reference = Reference(paths, value.get(DEFAULT_KEY), DEFAULT_KEY in value) if not problems else None
    return Found(where, reference, problems)


def _paths(raw: Any, field: str, problems: list[FieldProblem]) -> tuple[Path, ...]:
    """The paths `$from` names (one, or a list), adding what is wrong with them to `problems`."""
    texts = raw if isinstance(raw, list) else [raw]
    if not texts:
        problems.append(FieldProblem(field, "names no path: give one, or a list of them", type="malformed_reference"))
    paths = []
    for position, text in enumerate(texts):
        path, problem = parse_path(text)
        if path is None:
            at = f"{field}.{position}" if isinstance(raw, list) else field
            problems.append(FieldProblem(at, problem or "not a path", type="malformed_reference"))
        else:
            paths.append(path)
    return tuple(paths)


def parse_path(text: Any) -> tuple[Path | None, str | None]:
    """The path, or what is wrong with it."""
    if not isinstance(text, str):
        return None, "a path is a string, such as 'tasks.fetch.output.body'"
    parts = text.split(".")
    if any(not KEY_PATTERN.match(part) for part in parts):
        return None, f"{text!r} is not a path: keys of letters, digits, '_' and '-', joined by '.'"
    path = _rooted(text, parts)
    if path is None:
        return None, f"{text!r} starts nowhere known: a path starts at {', '.join(ROOTS)}"
    return path, None


def _rooted(text: str, parts: list[str]) -> Path | None:
    match parts:
        case ["input", *keys]:
            return Path(text, "input", None, tuple(keys))
        case ["tasks", task, "output", *keys]:
            return Path(text, "output", task, tuple(keys))
        case ["failed", "error", *keys]:
            return Path(text, "failed", None, ("error", *keys))
        case ["failed", "task"]:
            return Path(text, "failed", None, ("task",))
    return None


# ---------------------------------------------------------------------- when the template is stored
class TaskRuns(NamedTuple):
    """Where a template's task can run: the tasks that can have run before it, and whether it runs as a fallback."""

    before: set[str]
    as_fallback: bool


def runs_of(tasks: list[Any]) -> dict[str, TaskRuns]:
    """For each task that can run, what can run before it, on any path through the main line and its fallbacks.

    A main-line task comes after every earlier main-line task and their fallback chains; a fallback comes after what
    came before the task it stands in for (not that task, nor the fallbacks that led to it: they failed, and left no
    output).
    """
    fallback_of = {task.id: task.fallback for task in reversed(tasks) if task.fallback is not None}
    runs: dict[str, TaskRuns] = {}

    def reached(task_id: str, before: set[str], as_fallback: bool) -> None:
        known = runs.setdefault(task_id, TaskRuns(set(), as_fallback))
        known.before.update(before)
        if as_fallback and not known.as_fallback:
            runs[task_id] = known._replace(as_fallback=True)

    earlier: set[str] = set()
    for task in tasks:
        if task.fallback_only:
            continue
        reached(task.id, earlier, as_fallback=False)
        chain = {task.id}
        current = fallback_of.get(task.id)
        while current is not None and current not in chain:  # a cycle is refused elsewhere: stop at one
            reached(current, earlier, as_fallback=True)
            chain.add(current)
            current = fallback_of.get(current)
        earlier |= chain
    return runs


def reference_problems(tasks: list[Any], field: Callable[[int], str]) -> list[FieldProblem]:
    """Every problem with the references in the tasks' inputs; `field(index)` places a task's input in the body."""
    known = {task.id for task in tasks}
    runs = runs_of(tasks)
    problems: list[FieldProblem] = []
    for index, task in enumerate(tasks):
        for found in input_problems(task.input, field(index)):
            problems.extend(found.problems)
            if found.reference is not None:
                problems.extend(_order_problems(task.id, found, known, runs.get(task.id)))
    return problems


def _order_problems(task_id: str, found: Found, known: set[str], runs: TaskRuns | None) -> list[FieldProblem]:
    """What is wrong with where a well-formed reference reads from: a task that is not there, or does not run first."""
    assert found.reference is not None
    paths = found.reference.paths
    problems = []
    for position, path in enumerate(paths):
        problem = _order_problem(task_id, path, known, runs)
        if problem is not None:
            at = f"{found.where}.{REFERENCE_KEY}" + (f".{position}" if len(paths) > 1 else "")
            problems.append(FieldProblem(at, problem[1], type=problem[0]))
    return problems


def _order_problem(task_id: str, path: Path, known: set[str], runs: TaskRuns | None) -> tuple[str, str] | None:
    if path.root == "output" and path.task not in known:
        return "unknown_task", f"{path.task!r} is not a task of this template"
    if runs is None:
        return None  # a fallback_only task nobody falls back to never runs: nothing to order
    if path.root == "output" and path.task not in runs.before:
        return "not_before", f"task {path.task!r} does not run before {task_id!r}"
    if path.root == "failed" and not runs.as_fallback:
        return "not_fallback", f"task {task_id!r} never runs as a fallback: it has no failed task to read"
    return None


# ---------------------------------------------------------------------- when the task is queued
def resolve_input(value: dict[str, Any], sources: Sources) -> dict[str, Any]:
    """A task's input with its references resolved; Unresolved when one finds nothing and has no default."""
    resolved = resolve(value, sources)
    if not isinstance(resolved, dict):  # refused when stored: only a template stored before references were read
        raise Unresolved("input: a reference may not stand for the whole input")
    return resolved


def resolve(value: Any, sources: Sources, where: str = "input") -> Any:
    """`value` with each reference replaced by what it names; Unresolved when one finds nothing and has no default."""
    if isinstance(value, dict):
        if REFERENCE_KEY in value:
            found = _parse(value, where)
            if found.reference is None:  # checked when stored: only a template stored before references were read
                raise Unresolved(f"{where}: {found.problems[0].message}")
            return _value_of(found.reference, sources, where)
        return {key: resolve(item, sources, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, sources, f"{where}.{position}") for position, item in enumerate(value)]
    return value


_MISSING = object()


def _value_of(reference: Reference, sources: Sources, where: str) -> Any:
    reasons = []
    for path in reference.paths:
        start, reason = _start(path, sources)
        if start is not _MISSING:
            value, reason = _walk(start, path)
            if value is not _MISSING:
                return value
        reasons.append(f"{path.text}: {reason}" if len(reference.paths) > 1 else reason)
    if reference.has_default:
        return reference.default
    if len(reasons) > 1:
        raise Unresolved(f"{where}: no path has a value ({'; '.join(reasons)})")
    raise Unresolved(f"{where}: {reasons[0]}")


def _start(path: Path, sources: Sources) -> tuple[Any, str]:
    if path.root == "input":
        return sources.session_input, ""
    if path.root == "output":
        assert path.task is not None
        output = sources.outputs.get(path.task)
        if output is None:
            return _MISSING, f"task {path.task} has no output (it has not succeeded)"
        return output, ""
    if sources.failed is None:
        return _MISSING, "this run of the task stands in for no failed task"
    return sources.failed, ""


def _walk(start: Any, path: Path) -> tuple[Any, str]:
    value = start
    for depth, key in enumerate(path.keys):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and str(int(key)) == key and int(key) < len(value):
            value = value[int(key)]
        else:
            reached = ".".join(path.text.split(".")[: len(path.text.split(".")) - len(path.keys) + depth])
            return _MISSING, f"{reached} has no {key!r}"
    return value, ""
