"""Acceptance: agents in trouble, through the SDK, as AgentKit would meet it on Ops-Core.

An agent process killed mid-task (its lease expires, and the retry goes to it once it is back), an agent
quarantined for its own failure that recovers through a probe, and an agent process stopped by SIGTERM mid-task
(it finishes the task, takes no other, and goes offline). The processes run tests/uat/agent_process.py.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opscore_sdk import AgentFault, NotFound, OpsCore, TaskContext
from tests.uat.conftest import DEADLINE_SECONDS, Agent, until

NewAgent = Callable[[], Agent]
AGENT_PROCESS = Path(__file__).with_name("agent_process.py")


class AgentProcess:
    """tests/uat/agent_process.py running as `agent`, its stdout read line by line."""

    def __init__(self, agent: Agent) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
            [sys.executable, str(AGENT_PROCESS), agent.url, agent.key, agent.agent_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def said(self, prefix: str) -> str:
        """The first line (from now) that starts with `prefix`; fail if none comes within the deadline."""
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE_SECONDS)
            except queue.Empty:
                raise AssertionError(f"the agent process never said {prefix!r}") from None
            if line.startswith(prefix):
                return line


def current_state(agent: Agent) -> str | None:
    """The agent's state, or None while it is not registered or has reported none."""
    try:
        found = agent.client.get_agent(agent.agent_id).current_state
    except NotFound:
        return None
    return None if found is None else found.state


@contextmanager
def agent_process(agent: Agent) -> Iterator[AgentProcess]:
    started = AgentProcess(agent)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
        started.process.wait(timeout=DEADLINE_SECONDS)


def test_an_agent_killed_mid_task_gets_the_retry_after_its_restart(new_agent: NewAgent, admin: OpsCore) -> None:
    # Given an agent process working on a task that heartbeats every second and may be retried once
    agent = new_agent()
    with agent_process(agent) as first:
        until(lambda: current_state(agent), lambda state: state == "idle", "the agent registered and idle")
        task = {
            "action": "work.slow",
            "input": {"seconds": 60},
            "heartbeat_seconds": 1,
            "retry": {"max_retries": 1, "backoff_seconds": 0},
        }
        started = admin.run_task(agent.agent_id, task)
        assert first.said("started").split()[1:] == [started.task_id, "1"]

        # When the process is killed mid-task
        first.process.kill()

    # Then its lease expires and the attempt fails; the retry waits for the agent
    view = until(lambda: agent.session(started.session_id), lambda v: v.tasks[0].attempts == 2, "the retry queued")
    assert view.tasks[0].history[0].error is not None
    assert view.tasks[0].history[0].error.type == "OpsCore.LeaseExpired"

    # and when the agent is back, it takes the retry and completes it
    back = agent.worker()
    attempts: list[int] = []

    @back.task("work.slow")
    def slow(task: TaskContext) -> dict[str, Any]:
        attempts.append(task.attempt)
        return {"worked_seconds": 0}

    back.start()
    try:
        view = agent.ended(started.session_id)
    finally:
        back.stop()
    assert attempts == [2]
    assert (view.status, view.tasks[0].output) == ("completed", {"worked_seconds": 0})


def test_a_quarantined_agent_recovers_through_a_probe(new_agent: NewAgent, admin: OpsCore) -> None:
    # Given an agent quarantined at its first failure of its own, for a second
    agent = new_agent()
    worker = agent.worker(registration={"quarantine_after": 1, "quarantine_cooldown_seconds": 1})

    @worker.task("tool.run")
    def run(task: TaskContext) -> dict[str, Any]:
        if task.input.get("crash"):
            raise AgentFault("the browser crashed")
        return {"ran": True}

    worker.start()
    try:
        # When its tool crashes
        crashed = admin.run_task(agent.agent_id, {"action": "tool.run", "input": {"crash": True}})
        assert agent.ended(crashed.session_id).status == "error"
        quarantined = agent.client.get_agent(agent.agent_id)

        # Then it is quarantined; once half-open, the next task is its probe, whose success lifts the quarantine
        until(
            lambda: agent.client.get_agent(agent.agent_id).quarantine,
            lambda found: found is not None and found.half_open,
            "the quarantine half-open",
        )
        probe = admin.run_task(agent.agent_id, {"action": "tool.run"})
        probed = agent.ended(probe.session_id)
        recovered = until(
            lambda: agent.client.get_agent(agent.agent_id),
            lambda found: found.current_state is not None and found.current_state.state == "idle",
            "the agent idle",
        )
    finally:
        worker.stop()

    assert quarantined.quarantined
    assert quarantined.quarantine is not None
    assert quarantined.quarantine.last_error_type == "AgentFault"
    assert probed.status == "completed"
    assert (recovered.quarantined, recovered.failure_streak) == (False, 0)


def test_sigterm_mid_task_lets_the_task_finish_and_the_agent_goes_offline(new_agent: NewAgent, admin: OpsCore) -> None:
    # Given an agent process working on one task, with another queued behind it
    agent = new_agent()
    with agent_process(agent) as process:
        until(lambda: current_state(agent), lambda state: state == "idle", "the agent registered and idle")
        working = admin.run_task(agent.agent_id, {"action": "work.slow", "input": {"seconds": 1}})
        process.said("started")
        waiting = admin.run_task(agent.agent_id, {"action": "work.slow", "input": {"seconds": 1}})

        # When it is sent SIGTERM mid-task
        process.process.send_signal(signal.SIGTERM)

        # Then it finishes the task, reports it, exits cleanly and says it is offline; the other task stays queued
        assert process.process.wait(timeout=DEADLINE_SECONDS) == 0
        assert process.said("stopped") == "stopped"
    view = agent.session(working.session_id)
    assert (view.status, view.tasks[0].output) == ("completed", {"worked_seconds": 1, "pid": "agent_process"})
    registration = agent.client.get_agent(agent.agent_id)
    assert registration.current_state is not None
    assert registration.current_state.state == "offline"
    assert agent.session(waiting.session_id).tasks[0].status == "queued"
    admin.cancel(agent.agent_id, waiting.session_id)
