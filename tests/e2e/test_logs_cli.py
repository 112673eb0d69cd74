"""`opscore logs` and the runtime's record, as an operator uses them against `opscore local`.

Sessions with a retry, a fallback and a timeout, and an agent quarantined, run through the runtime; then `opscore
logs` runs as a subprocess with filters, as a table and as --json, and with --follow (read with a deadline, stopped
with Ctrl-C).
"""

from __future__ import annotations

import json
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Api, LocalProcess
from tests.e2e.test_sessions_over_http import Operator

DEADLINE_SECONDS = 30.0
OPSCORE = str(Path(sys.executable).with_name("opscore"))


def opscore(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command
        [OPSCORE, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@dataclass
class Flow:
    agent_id: str
    session_id: str
    workflow_id: str
    log: Path
    timed_out: str  # a session of the same agent whose only task ran into its timeout
    quarantined: str  # an agent whose own failure opened its breaker

    def records(self, *filters: str) -> list[dict[str, Any]]:
        """`opscore logs --json` with the filters, on this flow's log file: each line parsed."""
        result = opscore("logs", "--file", str(self.log), "--json", *filters)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def flow(api: Api, local_ops_core: LocalProcess | None) -> Flow:
    if local_ops_core is None:
        pytest.skip("reads the local runtime's log file")
    ops = Operator(api)
    session_id = ops.start(
        [
            {
                "id": "fetch",
                "action": "web.fetch",
                "retry": {"max_retries": 1, "backoff_seconds": 0},
                "fallback": "ask",
            },
            {"id": "ask", "action": "human.ask", "fallback_only": True},
        ]
    )
    ops.fail(ops.lease(session_id, "fetch"))
    ops.fail(ops.lease(session_id, "fetch", attempts=2), attempt=2)
    ops.succeed(ops.lease(session_id, "ask"))
    view = ops.ended(session_id)
    assert view["status"] == "completed"
    # a task leased and never answered: the runner's timeout ends it, and the session
    timed_out = ops.start([{"id": "slow", "action": "web.fetch", "timeout_seconds": 1}])
    ops.lease(timed_out, "slow")
    assert ops.ended(timed_out)["status"] == "error"
    # an agent whose own failure opens its breaker
    flaky = Operator(api)
    body = {"name": "flaky", "quarantine_after": 1, "quarantine_cooldown_seconds": 3600}
    assert api.request("PUT", f"/agent/{flaky.agent_id}", key=flaky.agent_key, body=body).status == 200
    broken = flaky.start([{"id": "work", "action": "web.fetch"}])
    error = {"type": "OutOfMemory", "message": "the worker ran out of memory", "fault": "agent"}
    failed = flaky.result(flaky.lease(broken, "work"), {"status": "failed", "error": error})
    assert failed.status == 200, failed.body
    flaky.ended(broken)
    return Flow(ops.agent_id, session_id, view["workflow_id"], local_ops_core.log_path, timed_out, flaky.agent_id)


def test_filters_by_agent_session_task_and_workflow(flow: Flow) -> None:
    by_agent = flow.records("--agent", flow.agent_id)
    assert {record["agent_id"] for record in by_agent} == {flow.agent_id}
    messages = [record["message"] for record in by_agent]
    assert messages[:4] == ["api key created", "audit: POST /keys allowed (201)", "request", "agent registered"]
    assert "session started" in messages

    by_session = flow.records("--session", flow.session_id)
    assert {record["session_id"] for record in by_session} == {flow.session_id}
    queued = [
        (record["task_id"][-3:], record["attempt"]) for record in by_session if record["message"] == "task queued"
    ]
    assert queued == [("000", 1), ("000", 2), ("001", 1)], "the retry, then the fallback"

    retried = flow.records("--task", f"{flow.session_id}-000")
    assert {record["task_id"] for record in retried} == {f"{flow.session_id}-000"}
    assert [record["attempt"] for record in retried if record["message"] == "task result reported"] == [1, 2]

    assert "session started" in [record["message"] for record in flow.records("--workflow", flow.workflow_id)]
    assert flow.records("--agent", "nobody-has-this-id") == []


def test_filters_combine_and_a_repeated_filter_takes_either_value(flow: Flow) -> None:
    leased_or_queued = flow.records("--session", flow.session_id, "--grep", "^task (queued|leased)$")
    assert [record["message"] for record in leased_or_queued].count("task leased") == 3
    assert len(leased_or_queued) == 6
    both = flow.records("--session", flow.session_id, "--session", "another-session")
    assert both == flow.records("--session", flow.session_id)
    newest = flow.records("--session", flow.session_id, "--limit", "2")
    assert newest == flow.records("--session", flow.session_id)[-2:]


def test_event_and_error_type_filters_keep_exactly_the_lines_that_carry_them(flow: Flow) -> None:
    session = flow.records("--session", flow.session_id)
    for option, name, value in [
        ("--event", "event", "task_failed"),
        ("--event", "event", "task_queued"),
        ("--error-type", "error_type", session_error_type(session)),
    ]:
        expected = [record for record in session if record.get(name) == value]
        assert flow.records("--session", flow.session_id, option, value) == expected, (option, value)


def test_a_timeout_and_a_quarantine_are_found_by_their_events_and_error_types(flow: Flow) -> None:
    # the timeout: the attempt's end and the session's, each with the runner's error
    (ended,) = flow.records("--session", flow.timed_out, "--event", "task_failed")
    assert (ended["error_type"], ended["old"], ended["new"]) == ("States.Timeout", "leased", "timed_out")
    assert ended["task_id"] == f"{flow.timed_out}-000"
    (session_end,) = flow.records("--session", flow.timed_out, "--event", "session_ended")
    assert (session_end["new"], session_end["error_type"]) == ("error", "States.Timeout")
    timeouts = flow.records("--error-type", "States.Timeout", "--agent", flow.agent_id)
    assert {record["session_id"] for record in timeouts} == {flow.timed_out}

    # the quarantine: the breaker's opening, found by its event, and the failure that opened it by its error type
    (opened,) = flow.records("--agent", flow.quarantined, "--event", "agent_quarantined")
    assert (opened["new"], opened["error_type"], opened["failures"]) == ("error", "OutOfMemory", 1)
    out_of_memory = flow.records("--agent", flow.quarantined, "--error-type", "OutOfMemory")
    assert {record["event"] for record in out_of_memory} >= {"task_failed", "agent_quarantined"}
    assert flow.records("--agent", flow.quarantined, "--event", "agent_quarantined", "--level", "warning") == [opened]


def session_error_type(session: list[dict[str, Any]]) -> str:
    """The error type the flow's failures were logged with (once every line names it), else one no line has."""
    return next((str(record["error_type"]) for record in session if record.get("error_type")), "ToolError")


def test_level_keeps_that_level_and_above(flow: Flow) -> None:
    warnings = flow.records("--level", "warning")
    assert warnings, "the runtime's log has warnings (Powertools warns of requests without metrics)"
    assert {record["level"] for record in warnings} <= {"WARNING", "ERROR", "CRITICAL"}
    everything = flow.records()
    assert len(flow.records("--level", "DEBUG")) == len(everything)
    assert len(everything) > len(warnings)


def test_the_time_window(flow: Flow) -> None:
    assert flow.records("--session", flow.session_id, "--since", "1h") == flow.records("--session", flow.session_id)
    result = opscore("logs", "--file", str(flow.log), "--session", flow.session_id, "--start", "2999-01-01T00:00:00Z")
    assert (result.returncode, result.stdout) == (0, ""), "nothing found is still exit 0, with nothing on stdout"
    assert "no matching lines" in result.stderr


def test_the_table_is_plain_off_a_terminal_in_local_time(flow: Flow) -> None:
    result = opscore("logs", "--file", str(flow.log), "--session", flow.session_id)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["TIME", "LEVEL", "AGENT", "EVENT", "MESSAGE", "IDS"]
    assert "\x1b[" not in result.stdout
    started = next(row for row in rows if "session started" in row)
    assert flow.agent_id in started
    assert f"session={flow.session_id}" in started
    assert f"workflow={flow.workflow_id}" in started
    zone = time.strftime("%Z", time.localtime())
    assert all(zone in row for row in rows)


def test_without_a_file_the_running_runtimes_log_is_read(flow: Flow, local_ops_core: LocalProcess) -> None:
    record_path = REPO / ".opscore" / "runtimes" / f"{local_ops_core.process.pid}.json"
    assert stat.S_IMODE(record_path.stat().st_mode) == 0o600, "readable only by its user"
    record = json.loads(record_path.read_text())
    assert (record["url"], record["admin_key"]) == (local_ops_core.base_url, local_ops_core.admin_key)
    result = opscore("logs", "--json", "--agent", flow.agent_id, "--limit", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["agent_id"] == flow.agent_id


@pytest.mark.parametrize(
    ("arguments", "code", "says"),
    [
        (["--since", "yesterday"], 2, "--since"),
        (["--start", "2026-12-01T10:00:00"], 2, "needs a zone"),
        (["--grep", "("], 2, "--grep"),
        (["--level", "LOUD"], 2, "--level"),
        (["--no-such-option"], 2, "No such option"),
        (["--file", "missing.jsonl"], 1, "no log file at missing.jsonl"),
    ],
)
def test_exit_codes_scripts_can_trust(arguments: list[str], code: int, says: str) -> None:
    result = opscore("logs", *arguments)
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("form", [["--json"], []])
def test_a_reader_that_goes_away_ends_it_quietly(flow: Flow, form: list[str]) -> None:
    reading = subprocess.Popen(  # noqa: S603 - our own command
        [OPSCORE, "logs", "--file", str(flow.log), *form],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reading.stdout is not None
    assert reading.stdout.readline()
    reading.stdout.close()  # as `| head -1` does
    _, errors = reading.communicate(timeout=DEADLINE_SECONDS)
    assert reading.returncode == 0, errors
    assert "Traceback" not in errors


class Following:
    """`opscore logs --follow` running, its stdout and stderr read line by line on threads."""

    def __init__(self, agent_id: str, *args: str) -> None:
        self.agent_id = agent_id
        self.process = subprocess.Popen(  # noqa: S603 - our own command
            [OPSCORE, "logs", "--follow", "--agent", agent_id, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr)):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    def next_line(self, lines: queue.Queue[str], what: str) -> str:
        try:
            return lines.get(timeout=DEADLINE_SECONDS)
        except queue.Empty:
            raise AssertionError(f"opscore logs --follow printed no {what} within {DEADLINE_SECONDS}s") from None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=DEADLINE_SECONDS)


def _pump(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


@pytest.fixture
def following(flow: Flow) -> Iterator[Following]:
    agent_id = f"e2e-follow-{uuid.uuid4().hex[:8]}"
    running = Following(agent_id, "--file", str(flow.log), "--json")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def test_follow_streams_new_matching_lines_until_ctrl_c(following: Following, api: Api) -> None:
    agent_id = following.agent_id
    # Nothing of this agent is logged yet: the note says so once the file has been read, and it follows.
    note = following.next_line(following.stderr, "note")
    assert "no matching lines" in note
    assert "following" in note

    key = api.admin("POST", "/keys", body={"agent_id": agent_id}).body["api_key"]
    assert api.request("PUT", f"/agent/{agent_id}", key=key, body={"name": "followed"}).status == 201

    seen = [json.loads(following.next_line(following.stdout, f"line {n + 1}")) for n in range(4)]
    assert [(line["agent_id"], line["event"]) for line in seen] == [
        (agent_id, "key_created"),
        (agent_id, "audit"),  # the admin's action
        (agent_id, "request"),  # and its answer, both naming the agent the key is for
        (agent_id, "agent_registered"),
    ]
    assert following.stop() == 0, "Ctrl-C ends --follow, and that is not an error"
    rest = [json.loads(line) for line in list(following.stdout.queue)]
    assert all(line["event"] == "request" and line["agent_id"] == agent_id for line in rest), rest  # its API call
    assert not any("Traceback" in line for line in list(following.stderr.queue))


def test_follow_takes_no_end(flow: Flow) -> None:
    result = opscore("logs", "--file", str(flow.log), "--follow", "--end", "2999-01-01T00:00:00Z")
    assert result.returncode == 2
    assert "--follow" in result.stderr


def test_other_commands_find_the_runtime_from_its_record(local_ops_core: LocalProcess | None) -> None:
    if local_ops_core is None:
        pytest.skip("the local runtime's record")
    from opscore_tools.target import resolve_target

    found = resolve_target(environ={}, cwd=REPO)
    assert found.base_url.startswith("http://127.0.0.1:")
    assert found.base_url.endswith("/v1/opscore")
