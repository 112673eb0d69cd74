"""What the dispatch and sweep functions do with an invocation, with fakes for the services they call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from opscore import wiring
from opscore.dispatch.health import SweepReport
from opscore.invocations import (
    DELIVERY_RESERVE_SECONDS,
    ServeRequest,
    dispatch_request,
    handle_dispatch_event,
    serving_budget,
    sweep_and_serve,
)
from opscore.sessions.records import TaskRef
from opscore.sessions.runner import Dispatched, DispatchRequest, RunnerFailure
from tests.conftest import EVENTS

DISPATCH_EVENT: dict[str, Any] = json.loads((EVENTS / "dispatch" / "dispatch.json").read_text())
SERVE_EVENT: dict[str, Any] = json.loads((EVENTS / "dispatch" / "serve.json").read_text())
RUNNER_FAILED_EVENT: dict[str, Any] = json.loads((EVENTS / "dispatch" / "runner_failed.json").read_text())


@dataclass
class FakeDispatcher:
    served: list[tuple[str, float]] = field(default_factory=list)
    enqueued_tasks: list[tuple[str, TaskRef, float]] = field(default_factory=list)
    failure: Exception | None = None

    def serve(self, agent_id: str, budget_seconds: float) -> int:
        self.served.append((agent_id, budget_seconds))
        return 1

    def enqueued(self, agent_id: str, task: TaskRef, budget_seconds: float) -> int:
        self.enqueued_tasks.append((agent_id, task, budget_seconds))
        if self.failure is not None:
            raise self.failure
        return 1


@dataclass
class FakeRunner:
    outcome: str = "queued"
    dispatched: list[tuple[str, str]] = field(default_factory=list)
    failed: list[RunnerFailure] = field(default_factory=list)
    freed: set[str] = field(default_factory=set)

    def dispatch(self, request: DispatchRequest) -> Dispatched:
        self.dispatched.append((request.session_id, request.token))
        return Dispatched(self.outcome, TaskRef(request.session_id, request.dispatch.index, 1))

    def runner_failed(self, request: RunnerFailure) -> set[str]:
        self.failed.append(request)
        return self.freed


@dataclass
class FakeHealth:
    report: SweepReport

    def sweep(self) -> SweepReport:
        return self.report


@pytest.fixture
def dispatcher(monkeypatch: pytest.MonkeyPatch) -> FakeDispatcher:
    fake = FakeDispatcher()
    monkeypatch.setattr(wiring, "dispatcher", lambda: fake)
    return fake


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    fake = FakeRunner()
    monkeypatch.setattr(wiring, "session_runner", lambda: fake)
    return fake


def remaining(*milliseconds: int) -> Any:
    """A Lambda context's clock that reads each of `milliseconds` in turn."""
    readings = iter(milliseconds)
    return lambda: next(readings)


@pytest.mark.parametrize(
    ("remaining_ms", "budget"),
    [(60_000, 40.0), (20_500, 0.5), (20_000, 0.0), (5_000, 0.0), (0, 0.0)],
)
def test_serving_budget_keeps_the_delivery_reserve_back(remaining_ms: int, budget: float) -> None:
    assert DELIVERY_RESERVE_SECONDS == 20.0
    assert serving_budget(remaining_ms) == pytest.approx(budget)


def test_a_dispatch_invocation_is_a_serve_a_runner_dispatch_or_a_failed_session() -> None:
    assert dispatch_request(SERVE_EVENT) == ServeRequest("agent-1")
    request = dispatch_request(DISPATCH_EVENT)
    assert isinstance(request, DispatchRequest)
    assert (request.session_id, request.token) == (DISPATCH_EVENT["session_id"], DISPATCH_EVENT["token"])
    assert (request.dispatch.id, request.given.priority) == ("fetch", 7)
    failed = dispatch_request(RUNNER_FAILED_EVENT)
    assert isinstance(failed, RunnerFailure)
    assert failed.failure.error == "States.Timeout"


def test_a_failed_session_is_recorded_then_the_agents_it_freed_are_served(
    dispatcher: FakeDispatcher, runner: FakeRunner
) -> None:
    runner.freed = {"agent-1"}
    assert handle_dispatch_event(RUNNER_FAILED_EVENT, remaining(45_000)) == {"recorded": "session_failed"}
    assert [request.session_id for request in runner.failed] == [RUNNER_FAILED_EVENT["runner_failed"]["session_id"]]
    assert dispatcher.served == [("agent-1", 25.0)]


def test_a_serve_invocation_serves_within_the_time_left(dispatcher: FakeDispatcher) -> None:
    assert handle_dispatch_event(SERVE_EVENT, remaining(50_000)) == {"pushed": 1}
    assert dispatcher.served == [("agent-1", 30.0)]


def test_a_dispatch_queues_the_attempt_then_serves_its_agent_with_the_time_left_after_queueing(
    dispatcher: FakeDispatcher, runner: FakeRunner
) -> None:
    answer = handle_dispatch_event(DISPATCH_EVENT, remaining(45_000))
    assert answer == {"dispatch": "queued"}
    session_id = DISPATCH_EVENT["session_id"]
    assert runner.dispatched == [(session_id, DISPATCH_EVENT["token"])]
    assert dispatcher.enqueued_tasks == [("agent-1", TaskRef(session_id, 0, 1), 25.0)]


def test_a_dispatch_for_an_ended_session_serves_nobody(dispatcher: FakeDispatcher, runner: FakeRunner) -> None:
    runner.outcome = "session_ended"
    assert handle_dispatch_event(DISPATCH_EVENT, remaining(45_000)) == {"dispatch": "session_ended"}
    assert dispatcher.enqueued_tasks == []


def test_a_failed_serve_never_fails_the_attempt_it_queued(
    dispatcher: FakeDispatcher, runner: FakeRunner, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher.failure = KeyError("a fault inside a delivery channel")
    assert handle_dispatch_event(DISPATCH_EVENT, remaining(45_000)) == {"dispatch": "queued"}
    assert "its next wake or pull takes the task" in caplog.text


def test_the_sweep_serves_freed_agents_in_order_while_time_is_left(
    dispatcher: FakeDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = SweepReport(attempts_timed_out=2, leases_expired=3, agents_offline=1, agents_freed={"c", "a", "b"})
    monkeypatch.setattr(wiring, "agent_health", lambda: FakeHealth(report))
    # a, then b with 1 s of budget left, then c when only the reserve is left
    outcome = sweep_and_serve(remaining(100_000, 21_000, 20_000))
    assert dispatcher.served == [("a", 80.0), ("b", 1.0)]
    assert outcome.as_dict() == {"attempts_timed_out": 2, "leases_expired": 3, "agents_offline": 1, "pushed": 2}
