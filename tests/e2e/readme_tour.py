"""The README's shell examples as data: the commands of each block, the answers shown after them, and how to compare.

A README answer is written as JSON with `...` where the reader should expect more; this module reads it as a pattern:
- `...` as an object member: the object may have more keys; without it, the keys must be exactly those shown;
- `...` as an array item: more items may come (the shown ones must appear in that order); without it, exactly those;
- `...` as a value: anything there; `"..."` a string, any string; `"...-000"` a string ending `-000` (and so on);
- a string that is or holds a run-specific value is compared by format: a timestamp like `2026-11-24T10:01:00.000000Z`
  (the same digits, separators and fraction length), a request id (UUID), a key (`opsk_...`), a hex id (its length);
  the same hex id shown twice in the tour must be the same id in the run's answers (a session and its task's id);
- every other string, number, boolean and null is a literal the answer must equal, type included.
The status written after an answer, `(202)` or `(201; ...)`, is the status the call must get.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
ELLIPSIS = "..."

# Run-specific values, compared by format. The first pattern that matches a part of a shown string decides.
_RUN_SPECIFIC = re.compile(
    r"(?P<timestamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))"
    r"|(?P<uuid>\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)"
    r"|(?P<key>\bopsk_[A-Za-z0-9_-]{16,})"
    r"|(?P<hex_id>\b[0-9a-f]{16,}\b)"
)


@dataclass
class Block:
    language: str
    first_line: int  # 1-based line number of the block's first content line in the README
    lines: list[str]


@dataclass
class Answer:
    line: int  # where the answer starts in the README
    text: str  # the JSON-like pattern as written
    pattern: Any
    status: int | None  # the status written after it, if any


@dataclass
class Step:
    line: int  # where the command starts in the README
    command: str
    answer: Answer | None = None


@dataclass
class Readme:
    blocks: list[Block]

    @classmethod
    def read(cls, path: Path) -> Readme:
        blocks: list[Block] = []
        current: Block | None = None
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if current is None and (opening := re.match(r"^```(\w*)\s*$", line)):
                current = Block(opening.group(1), number + 1, [])
            elif current is not None and line.startswith("```"):
                blocks.append(current)
                current = None
            elif current is not None:
                current.lines.append(line)
        return cls(blocks)

    def tour_blocks(self) -> list[Block]:
        """The shell blocks that talk to the API: they run, in the README's order, as one reader's session."""
        return [
            block
            for block in self.blocks
            if block.language in SHELL_LANGUAGES and any(re.search(r"(^|[\s($|])curl\s", line) for line in block.lines)
        ]

    def files(self) -> dict[str, str]:
        """Blocks whose first line names a file (`# triage.yaml`): the tour's commands read them (`@triage.yaml`)."""
        named = {}
        for block in self.blocks:
            if block.lines and (name := re.match(r"^#\s*([\w.-]+\.(?:ya?ml|json))\s*$", block.lines[0])):
                named[name.group(1)] = "\n".join(block.lines) + "\n"
        return named

    def answer_lines(self) -> list[int]:
        """Every line of a shell block that starts an answer (`# {` or `# [`), run or not."""
        return [
            block.first_line + offset
            for block in self.blocks
            if block.language in SHELL_LANGUAGES
            for offset, line in enumerate(block.lines)
            if re.match(r"^#\s?[{\[]", line)
        ]


def steps(block: Block) -> list[Step]:
    """A block's commands, each with the answer shown right after it (comment lines starting `# {`)."""
    found: list[Step] = []
    lines, index = block.lines, 0
    while index < len(lines):
        line, number = lines[index], block.first_line + index
        if not line.strip():
            index += 1
        elif line.lstrip().startswith("#"):
            if re.match(r"^#\s?[{\[]", line):
                assert found, f"README line {number}: an answer with no command before it"
                assert found[-1].answer is None, f"README line {number}: a second answer for one command"
                found[-1].answer, index = _answer(lines, index, number)
            else:
                index += 1  # prose for the reader
        else:
            command = [line]
            while command[-1].rstrip().endswith("\\") and index + 1 < len(lines):
                index += 1
                command.append(lines[index])
            found.append(Step(number, "\n".join(command)))
            index += 1
    return found


def _answer(lines: list[str], index: int, number: int) -> tuple[Answer, int]:
    text = re.sub(r"^#\s?", "", lines[index])
    index += 1
    while (end := _json_end(text)) is None:
        assert index < len(lines), f"README line {number}: an unfinished answer"
        assert lines[index].startswith("#"), f"README line {number}: an unfinished answer"
        text += " " + lines[index][1:].strip()
        index += 1
    trailer = text[end:]
    status = re.search(r"\((\d{3})\b", trailer)
    return Answer(number, text[:end], parse_pattern(text[:end]), int(status.group(1)) if status else None), index


def _json_end(text: str) -> int | None:
    """Where the first bracketed value of the text ends, or None while it is still open."""
    depth, in_string, escaped = 0, False, False
    for position, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return position + 1
    return None


# The pattern: JSON values, plus the marker Open (more keys or items) and Anything (any value).
class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ANYTHING = _Marker("...")
MORE = _Marker("<more>")

_TOKEN = re.compile(
    r'\s*(?:(?P<ellipsis>\.\.\.)|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<word>true|false|null)|(?P<punct>[{}\[\]:,]))"
)


def parse_pattern(text: str) -> Any:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        token = _TOKEN.match(text, position)
        assert token is not None, f"cannot read the answer at {text[position : position + 30]!r}"
        kind = token.lastgroup or ""
        tokens.append((kind, token.group(kind)))
        position = token.end()
    value, rest = _value(tokens)
    assert not rest, f"text after the answer: {rest}"
    return value


def _value(tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
    (kind, text), rest = tokens[0], tokens[1:]
    if kind == "ellipsis":
        return ANYTHING, rest
    if kind in {"string", "number", "word"}:
        return json.loads(text), rest
    if text == "{":
        return _members(rest)
    if text == "[":
        return _items(rest)
    raise AssertionError(f"unexpected {text!r} in an answer")


def _members(tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
    members: dict[Any, Any] = {}
    while tokens[0][1] != "}":
        if tokens[0][0] == "ellipsis":
            members[MORE], tokens = True, tokens[1:]
        else:
            assert tokens[0][0] == "string", f"expected a key at {tokens[:2]}"
            assert tokens[1][1] == ":", f"expected a key at {tokens[:2]}"
            members[json.loads(tokens[0][1])], tokens = _value(tokens[2:])
        if tokens[0][1] == ",":
            tokens = tokens[1:]
    return members, tokens[1:]


def _items(tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
    items: list[Any] = []
    while tokens[0][1] != "]":
        if tokens[0][0] == "ellipsis":
            items.append(MORE)
            tokens = tokens[1:]
        else:
            item, tokens = _value(tokens)
            items.append(item)
        if tokens[0][1] == ",":
            tokens = tokens[1:]
    return items, tokens[1:]


@dataclass
class Comparison:
    """Compares answers with the README's patterns; remembers which run value each shown hex id stood for."""

    ids: dict[str, str] = field(default_factory=dict)

    def mismatch(self, pattern: Any, actual: Any, where: str = "$") -> str | None:
        """The first difference, described, or None when the answer has the README's shape."""
        bound = dict(self.ids)
        problem = self._compare(pattern, actual, where, bound)
        if problem is None:
            self.ids = bound
        return problem

    def _compare(self, pattern: Any, actual: Any, where: str, ids: dict[str, str]) -> str | None:
        if pattern is ANYTHING:
            return None
        if isinstance(pattern, dict):
            return self._object(pattern, actual, where, ids)
        if isinstance(pattern, list):
            return self._array(pattern, actual, where, ids)
        if isinstance(pattern, str):
            return self._string(pattern, actual, where, ids)
        if type(pattern) is not type(actual) or pattern != actual:
            return f"{where}: the README shows {json.dumps(pattern)}, the API answered {json.dumps(actual)}"
        return None

    def _object(self, pattern: dict[Any, Any], actual: Any, where: str, ids: dict[str, str]) -> str | None:
        if not isinstance(actual, dict):
            return f"{where}: the README shows an object, the API answered {json.dumps(actual)}"
        shown = [key for key in pattern if key is not MORE]
        if missing := [key for key in shown if key not in actual]:
            return f"{where}: the README shows {missing}, which the API did not answer (it has {sorted(actual)})"
        if MORE not in pattern and (extra := sorted(set(actual) - set(shown))):
            return f"{where}: the API also answered {extra}; show them, or end the object with `...`"
        for key in shown:
            if problem := self._compare(pattern[key], actual[key], f"{where}.{key}", ids):
                return problem
        return None

    def _array(self, pattern: list[Any], actual: Any, where: str, ids: dict[str, str]) -> str | None:
        if not isinstance(actual, list):
            return f"{where}: the README shows an array, the API answered {json.dumps(actual)}"
        shown = [item for item in pattern if item is not MORE]
        if MORE not in pattern:
            if len(shown) != len(actual):
                return f"{where}: the README shows {len(shown)} items, the API answered {len(actual)}"
            for index, (item, value) in enumerate(zip(shown, actual, strict=True)):
                if problem := self._compare(item, value, f"{where}[{index}]", ids):
                    return problem
            return None
        index = 0
        for number, item in enumerate(shown):
            while index < len(actual) and self._compare(item, actual[index], where, trial := dict(ids)) is not None:
                index += 1
            if index == len(actual):
                return f"{where}: no item (after the ones before it) matches the README's item {number}: {item}"
            ids.update(trial)
            index += 1
        return None

    def _string(self, pattern: str, actual: Any, where: str, ids: dict[str, str]) -> str | None:
        if not isinstance(actual, str):
            return f"{where}: the README shows a string, the API answered {json.dumps(actual)}"
        regex, shown_ids = _string_regex(pattern)
        found = re.fullmatch(regex, actual)
        if found is None:
            return f"{where}: the API answered {json.dumps(actual)}, which does not have the README's {pattern!r}"
        for group, shown in shown_ids.items():
            value = found.group(group)
            if ids.setdefault(shown, value) != value:
                return f"{where}: the README shows {shown} here as elsewhere, but the API answered {value} here"
        return None


def _string_regex(pattern: str) -> tuple[str, dict[str, str]]:
    """A shown string as a regular expression: `...` is anything, run-specific values their format, the rest itself."""
    shown_ids: dict[str, str] = {}
    parts = []
    for piece in pattern.split(ELLIPSIS):
        regex, position = "", 0
        for value in _RUN_SPECIFIC.finditer(piece):
            regex += re.escape(piece[position : value.start()])
            token = value.group(0)
            if value.lastgroup == "hex_id":
                group = f"id{len(shown_ids)}"
                shown_ids[group] = token
                regex += f"(?P<{group}>[0-9a-f]{{{len(token)}}})"
            elif value.lastgroup == "key":
                regex += r"opsk_[A-Za-z0-9_-]{16,}"
            else:  # a timestamp or a UUID: every digit (and hex digit of a UUID) stands for any
                digit = r"[0-9a-f]" if value.lastgroup == "uuid" else r"\d"
                regex += "".join(digit if char.isalnum() and char not in "TZ" else re.escape(char) for char in token)
            position = value.end()
        parts.append(regex + re.escape(piece[position:]))
    return ".*".join(parts), shown_ids


@dataclass
class Call:
    """One curl call a step made, as the shell recorded it."""

    status: int
    method: str
    url: str
    body: Any  # the parsed JSON, or None when there was none

    @property
    def line(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


def judge(answer: Answer | None, exit_code: int, calls: list[Call], comparison: Comparison) -> str | None:
    """What is wrong with a step's run, or None: it exited 0 and its last call answered what the README shows.

    A step with no answer shown must still succeed: every call it made answered 2xx. The status the README writes
    after an answer must be the one answered; with none written, an error answer must come with a 4xx, any other
    with a 2xx.
    """
    if exit_code != 0:
        return f"the command exited with status {exit_code}"
    if answer is None:
        failed = [call.line for call in calls if not 200 <= call.status < 300]
        return f"the README shows no error, but: {failed}" if failed else None
    if not calls:
        return "the README shows an answer, but the command made no call"
    if problem := _status_problem(answer, calls[-1].status):
        return problem
    if calls[-1].body is None:
        return "the README shows a body, the API answered none"
    return comparison.mismatch(answer.pattern, calls[-1].body)


def _status_problem(answer: Answer, status: int) -> str | None:
    if answer.status is not None and status != answer.status:
        return f"the README shows status {answer.status}, the API answered {status}"
    if answer.status is not None:
        return None
    shows_error = isinstance(answer.pattern, dict) and "error" in answer.pattern
    if not (400 <= status < 500 if shows_error else 200 <= status < 300):
        return f"the README shows {'an error' if shows_error else 'a success'}, the API answered {status}"
    return None


def pollable(answer: Answer | None, calls: list[Call]) -> bool:
    """A step a reader would simply run again: it only reads, or it asked for work and got 204 (not ready yet)."""
    if answer is None or not calls:
        return False
    return all(call.method == "GET" for call in calls) or calls[-1].status == 204


# Every curl call of the tour goes through this function: it runs curl with the reader's arguments unchanged, keeps
# the status, method, URL and body in $TOUR_RECORDS for the test, and prints the body as curl would.
CURL_RECORDER = r"""
curl() {
  local record
  record="$TOUR_RECORDS/$(find "$TOUR_RECORDS" -name '*.call' | wc -l | tr -d ' ')"
  command curl --max-time 30 -o "$record.body" -w '%{http_code} %{method} %{url_effective}' "$@" >"$record.call" \
    || return
  if [ -f "$record.body" ]; then cat "$record.body"; fi
}
"""


class Shell:
    """One bash, as a reader's terminal: the steps run in it one after another, so variables carry over."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.records = cwd / ".tour-records"
        self.records.mkdir()
        self._sentinel = f"__tour_step_done_{uuid.uuid4().hex}__"
        self._process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],  # noqa: S607 - bash from the PATH, as the reader's
            cwd=cwd,
            env={**env, "TOUR_RECORDS": str(self.records)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._send(CURL_RECORDER)

    def _pump(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _send(self, text: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(text + "\n")
        self._process.stdin.flush()

    def run(self, command: str, timeout: float) -> tuple[int, str, list[Call]]:
        """Run one command (stdin closed, so it cannot read the script); its exit status, output and curl calls."""
        for old in self.records.iterdir():
            old.unlink()
        self._send(f"{{\n{command}\n}} </dev/null\nprintf '\\n%s %s\\n' {self._sentinel} $?")
        output: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no end after {timeout}s: {output}") from None
            if line is None:
                raise AssertionError(f"bash exited: {output}")
            if line.startswith(self._sentinel):
                return int(line.split()[-1]), "\n".join(output).strip(), self._calls()
            output.append(line)

    def _calls(self) -> list[Call]:
        calls = []
        for record in sorted(self.records.glob("*.call"), key=lambda path: int(path.stem)):
            written = record.read_text().split(" ", 2)  # nothing when curl failed before it could say
            status, method, url = written if len(written) == 3 else ("0", "?", "?")
            body_file = record.with_suffix(".body")
            body = body_file.read_text() if body_file.exists() else ""
            calls.append(Call(int(status), method, url, json.loads(body) if body.strip() else None))
        return calls

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
