"""The README's examples, run as a reader runs them against `opscore local`: every answer shown is what the API says.

The test reads README.md itself, so a new example is covered the day it is written:
- it starts one local runtime with the admin key the README starts it with (`OPSCORE_ADMIN_KEY=... make run`),
  writes the files the README names (a block whose first line is `# triage.yaml`) into an empty folder, and runs
  every shell block that calls curl, in the README's order, command by command in one bash (so `AGENT_KEY=$(...)`
  carries over), with the README's base URL pointed at the runtime's port;
- each curl call is recorded (status, method, URL, body) and held to docs/openapi.yaml, as every e2e answer is;
- a command with an answer shown after it (`# {...}`, continued over `#` lines) must get that answer, compared as
  tests/e2e/readme_tour.py describes: the same keys at every level unless `...` allows more, the same literals
  (codes, messages, statuses, actions, priorities, attempts, versions), run-specific values (ids, timestamps,
  keys) by format only, and the status written after it (`(202)`), or else a 4xx for an error and a 2xx otherwise;
- a command with no answer shown must exit 0 with every call answered 2xx;
- a read, or a lease answered 204, is asked again until it matches (a reader polls: the runner needs a moment to
  queue a task), for at most POLL_SECONDS; nothing waits a fixed time;
- every `# {` answer in a shell block of the README must have been checked, so an example in a block the tour does
  not run fails the test instead of escaping it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema

from tests.conftest import REPO
from tests.e2e.conftest import Contract, start_local
from tests.e2e.readme_tour import Answer, Comparison, Readme, Shell, judge, pollable, steps

README = REPO / "README.md"
POLL_SECONDS = 20.0
STEP_TIMEOUT_SECONDS = 60.0


def test_every_readme_example_answers_what_the_readme_shows(tmp_path: Path, contract: Contract) -> None:
    assert shutil.which("curl"), "the README's examples use curl: install it (.ci/run does when it is missing)"
    readme = Readme.read(README)
    text = README.read_text()
    admin_key = re.search(r"OPSCORE_ADMIN_KEY=(\S+) make run", text)
    base_url = re.search(r"^OPSCORE=(\S+)$", text, re.MULTILINE)
    assert admin_key, "the tour starts Ops-Core with `OPSCORE_ADMIN_KEY=... make run`"
    assert base_url, "the tour sets OPSCORE=<the base URL>"
    runtime = start_local(tmp_path, {"OPSCORE_ADMIN_KEY": admin_key.group(1)})
    reader = tmp_path / "reader"
    reader.mkdir()
    for name, content in readme.files().items():
        (reader / name).write_text(content)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"OPSCORE", "ADMIN", "AGENT_KEY", "SESSION", "TASK"}
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # a python3 for the one-liners
    shell = Shell(reader, env)
    comparison = Comparison()
    checked: list[int] = []
    try:
        for block in readme.tour_blocks():
            for step in steps(block):
                command = step.command.replace(base_url.group(1), runtime.base_url)
                run_step(shell, contract, runtime.base_url, step.line, command, step.answer, comparison)
                if step.answer is not None:
                    checked.append(step.answer.line)
    finally:
        shell.close()
        assert runtime.stop() == 0
    unchecked = sorted(set(readme.answer_lines()) - set(checked))
    assert not unchecked, f"README answers in blocks the tour does not run (no curl call in them?): lines {unchecked}"


def run_step(
    shell: Shell,
    contract: Contract,
    base_url: str,
    line: int,
    command: str,
    answer: Answer | None,
    comparison: Comparison,
) -> None:
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        exit_code, output, calls = shell.run(command, STEP_TIMEOUT_SECONDS)
        for call in calls:
            if call.status == 0:  # no HTTP answer at all (curl could not connect): judge says so
                continue
            try:
                contract.check(call.method, api_path(base_url, call.url), call.status, call.body)
            except (AssertionError, jsonschema.ValidationError) as error:
                raise AssertionError(
                    f"README line {line}: {call.line} disagrees with docs/openapi.yaml: {error}"
                ) from None
        problem = judge(answer, exit_code, calls, comparison)
        if problem is None:
            return
        if not pollable(answer, calls) or time.monotonic() > deadline:
            answered = calls[-1].body if calls else None
            raise AssertionError(
                f"README line {line}: {problem}\ncommand: {command}\noutput: {output}\n"
                f"calls: {[call.line for call in calls]}\nlast answer: {answered}"
            )
        time.sleep(0.1)  # between two polls, as a reader's loop would


def api_path(base_url: str, url: str) -> str:
    prefix = urlsplit(base_url).path.rstrip("/")
    path = urlsplit(url).path
    assert path.startswith(prefix), f"{url} is not under {base_url}"
    return path.removeprefix(prefix)
