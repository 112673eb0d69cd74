"""AgentWorker against an Ops-Core in memory (tests/sdk/fake_opscore.py): what it registers and reports, how it
leases, heartbeats, reports results and failures, gives up leases it lost or cannot renew, and shuts down.
The same worker against the local runtime: tests/uat/."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from opscore_sdk import (
    AgentFault,
    AgentWorker,
    Backoff,
    LeaseLost,
    NotRetryable,
    RetryPolicy,
    TaskContext,
    WorkerFailed,
)
from opscore_sdk._task import error_type
from tests.integration.session_driver import eventually
from tests.sdk.fake_opscore import SESSION, FakeOpsCore, leased

FAST_POLL = Backoff(initial=0.001, maximum=0.01)


def task_id(number: int) -> str:
    return f"{SESSION}-{number:03d}"


class BadInput(NotRetryable):
    pass


@pytest.fixture
def fake() -> FakeOpsCore:
    return FakeOpsCore()


@pytest.fixture
def worker(fake: FakeOpsCore) -> Iterator[AgentWorker]:
    worker = AgentWorker(fake.client(), "agent-1", max_concurrency=2, poll=FAST_POLL, drain_timeout=5)
    yield worker
    worker.stop(drain_timeout=0)


def test_it_registers_its_handlers_reports_idle_busy_idle_and_offline_on_stop(
    fake: FakeOpsCore, worker: AgentWorker
) -> None:
    # Given a worker with two handlers, one async (the first running until the agent is reported busy)
    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        eventually(lambda: "busy" in fake.state_names, "busy reported", lambda: fake.state_names)
        return {"fetched": task.input["n"], "attempt": task.attempt, "session": task.session_id}

    @worker.task("text.summarise")
    async def summarise(task: TaskContext) -> dict[str, Any]:
        return {"summary": task.action}

    fake.queue += [leased(1, attempt=2), leased(2, "text.summarise")]

    # When it starts and the queue empties
    worker.start()
    eventually(lambda: len(fake.results) == 2, "both results", lambda: fake.results)
    eventually(lambda: fake.state_names[-1:] == ["idle"], "idle again", lambda: fake.state_names)
    worker.stop()

    # Then it registered the actions it handles, with its concurrency
    assert fake.registrations == [
        {"name": "agent-1", "capabilities": ["text.summarise", "web.fetch"], "max_concurrency": 2}
    ]
    # and each result names its attempt and carries the handler's output
    assert fake.results[task_id(1)] == {
        "status": "succeeded",
        "attempt": 2,
        "output": {"fetched": 1, "attempt": 2, "session": SESSION},
    }
    assert fake.results[task_id(2)] == {"status": "succeeded", "attempt": 1, "output": {"summary": "text.summarise"}}
    # and its states were changes only, idle first and offline last, each stamped later than the one before
    names = fake.state_names
    assert names[0] == "idle"
    assert names[-1] == "offline"
    assert "busy" in names
    assert all(first != second for first, second in itertools.pairwise(names))
    stamps = [state["timestamp"] for state in fake.states]
    assert stamps == sorted(set(stamps))


def test_an_exception_fails_the_attempt_with_its_type_and_message_and_not_retryable_says_so(
    fake: FakeOpsCore, worker: AgentWorker
) -> None:
    # Given handlers that raise, one an exception not worth retrying, one the agent's own fault
    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        if task.input["n"] == 1:
            raise TimeoutError("upstream took too long")
        if task.input["n"] == 2:
            raise BadInput("the url is not a url")
        raise AgentFault("the browser crashed")

    fake.queue += [leased(1), leased(2), leased(3)]

    # When the worker runs them
    worker.start()
    eventually(lambda: len(fake.results) == 3, "three results", lambda: fake.results)

    # Then each failure names the exception's class and message; only the NotRetryable one says not to retry
    assert fake.results[task_id(1)] == {
        "status": "failed",
        "attempt": 1,
        "error": {"type": "TimeoutError", "message": "upstream took too long"},
    }
    assert fake.results[task_id(2)]["error"] == {
        "type": "BadInput",
        "message": "the url is not a url",
        "retryable": False,
    }
    # and an AgentFault says the agent is at fault
    assert fake.results[task_id(3)]["error"] == {
        "type": "AgentFault",
        "message": "the browser crashed",
        "fault": "agent",
    }


def test_an_ops_core_without_retryable_still_gets_the_failure(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given an Ops-Core that refuses the `retryable` field
    fake.takes_retryable = False

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        raise NotRetryable("no")

    fake.queue.append(leased(1))

    # When a handler raises NotRetryable
    worker.start()

    # Then the failure is reported without the field
    eventually(lambda: task_id(1) in fake.results, "the result", lambda: fake.results)
    assert fake.results[task_id(1)]["error"] == {"type": "NotRetryable", "message": "no"}


def test_it_never_runs_more_than_max_concurrency_tasks_at_once(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given three tasks whose handlers wait to be released
    release = threading.Event()
    started: list[str] = []

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        started.append(task.task_id)
        release.wait()

    fake.queue += [leased(1), leased(2), leased(3)]

    # When the worker (two slots) runs
    worker.start()
    eventually(lambda: len(started) == 2, "two tasks running", lambda: started)

    # Then the third waits in the queue until a slot frees, and all three complete
    assert len(fake.queue) == 1
    assert worker.running == 2
    release.set()
    eventually(lambda: len(fake.results) == 3, "three results", lambda: fake.results)
    assert fake.leases == 3


def test_a_lost_lease_tells_the_handler_and_its_result_is_dropped(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given a handler that works until its lease is lost, on a task heartbeating every second
    stopped_by: list[str] = []

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        try:
            while not task.lease_lost.wait(0.01):
                pass
            task.raise_if_lost()
        except LeaseLost as lost:
            stopped_by.append(str(lost))
        return {"late": True}

    fake.queue.append(leased(1, heartbeat_seconds=1))
    worker.start()
    eventually(lambda: task_id(1) in fake.heartbeats, "a heartbeat", lambda: fake.heartbeats)

    # When Ops-Core ends the lease (the session was cancelled, or the lease expired)
    with fake.lock:
        fake.lost.add(task_id(1))

    # Then the handler is told, its result is not reported, and the worker goes on
    eventually(lambda: bool(stopped_by), "the handler told", lambda: stopped_by)
    assert "task_not_open" in stopped_by[0]
    eventually(lambda: worker.running == 0, "the slot freed", lambda: worker.running)
    assert fake.results == {}
    assert worker.failure is None


def test_heartbeats_that_keep_failing_stop_the_worker_and_it_says_why(fake: FakeOpsCore) -> None:
    # Given a worker whose heartbeats get no answer
    worker = AgentWorker(fake.client(), "agent-1", poll=FAST_POLL, max_heartbeat_failures=2, drain_timeout=5)
    told: list[str] = []

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        task.lease_lost.wait()
        told.append(task.lost_reason or "")
        return {"late": True}

    fake.queue += [leased(1, heartbeat_seconds=1), leased(2)]
    fake.heartbeats_unanswered = True

    # When it runs a task
    worker.start()

    # Then it gives up: the handler is told, no result is reported, no more work is taken, and `error` says why
    assert worker.wait(timeout=30), "the worker never gave up"
    eventually(lambda: bool(told), "the handler told", lambda: told)
    worker.stop()
    assert "2 heartbeats in a row got no answer" in (worker.failure or "")
    assert "gave up its leases" in told[0]
    assert fake.results == {}
    assert fake.leases == 1
    assert fake.state_names[-1] == "error"
    assert "heartbeats in a row" in fake.states[-1]["error"]["message"]


def test_stop_lets_running_tasks_finish_and_leases_nothing_more(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given a task running
    running = threading.Event()
    release = threading.Event()

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        running.set()
        release.wait()
        return {"done": True}

    fake.queue.append(leased(1))
    worker.start()
    assert running.wait(30)

    # When the worker is stopped, another task is queued, and the running one finishes during the drain
    stopping = threading.Thread(target=worker.stop)
    stopping.start()
    eventually(lambda: not worker.leasing, "leasing stopped")
    with fake.lock:
        fake.queue.append(leased(2))
    release.set()
    stopping.join()

    # Then its result is reported, the queued one was never leased, and the agent is offline
    assert fake.results[task_id(1)]["output"] == {"done": True}
    assert fake.leases == 1
    assert fake.state_names[-1] == "offline"


def test_a_task_still_running_after_the_drain_timeout_is_told_and_reported_failed_worth_retrying(
    fake: FakeOpsCore, worker: AgentWorker
) -> None:
    # Given a handler that runs until its lease is lost
    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        task.lease_lost.wait()
        return {"late": True}

    fake.queue.append(leased(1))
    worker.start()
    eventually(lambda: worker.running == 1, "the task running")

    # When the worker stops with no time to drain
    worker.stop(drain_timeout=0)

    # Then the attempt is reported failed as given up, worth retrying (not left to expire), the handler's own result
    # dropped, and the agent is offline
    eventually(lambda: worker.running == 0, "the handler ended")
    assert fake.results == {
        task_id(1): {
            "status": "failed",
            "attempt": 1,
            "error": {"type": "WorkerStopped", "message": "the worker stopped before the task finished"},
        }
    }
    assert fake.state_names[-1] == "offline"


def test_a_quarantined_agent_waits_the_retry_after_it_is_told(
    fake: FakeOpsCore, worker: AgentWorker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given Ops-Core answers that the agent is quarantined for an hour
    fake.quarantine_retry_after = 3600
    caplog.set_level(logging.INFO, logger="opscore_sdk.worker")

    # When the worker starts
    worker.start()
    eventually(lambda: "quarantined" in caplog.text, "the quarantine logged", lambda: caplog.text)
    worker.stop()

    # Then it asked once and would have waited the hour (stop cut the wait short)
    assert "agent agent-1 is quarantined; asking again in 3600 s" in caplog.text
    assert fake.leases == 0
    assert fake.state_names == ["idle", "offline"]


def test_run_stops_gracefully_on_sigterm(fake: FakeOpsCore) -> None:
    # Given a worker running in the main thread
    worker = AgentWorker(fake.client(), "agent-1", poll=FAST_POLL)
    before = signal.getsignal(signal.SIGTERM)

    def terminate_once_idle() -> None:
        eventually(lambda: fake.state_names[:1] == ["idle"], "the worker started", lambda: fake.state_names)
        os.kill(os.getpid(), signal.SIGTERM)

    # When SIGTERM arrives
    threading.Thread(target=terminate_once_idle).start()
    worker.run()

    # Then run returns, the agent is offline, and the previous handler is back
    assert fake.state_names[-1] == "offline"
    assert worker.stopped
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_handler_must_answer_a_mapping_and_a_second_handler_for_an_action_is_refused(
    fake: FakeOpsCore, worker: AgentWorker
) -> None:
    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> Any:
        return ["not", "a", "mapping"]

    with pytest.raises(ValueError, match="already registered"):
        worker.task("web.fetch")(fetch)

    fake.queue.append(leased(1))
    worker.start()
    eventually(lambda: task_id(1) in fake.results, "the result", lambda: fake.results)
    assert fake.results[task_id(1)]["error"]["type"] == "TypeError"
    assert "returned list" in fake.results[task_id(1)]["error"]["message"]


def test_backoff_grows_to_its_maximum_with_jitter() -> None:
    low = Backoff(initial=0.5, maximum=4.0, random=lambda: 0.0)
    high = Backoff(initial=0.5, maximum=4.0, random=lambda: 1.0)

    assert [high.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [low.delay(n) for n in (1, 4)] == [0.25, 2.0]
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0)


def test_an_exception_class_name_the_api_would_refuse_is_made_acceptable() -> None:
    assert error_type(ValueError()) == "ValueError"
    assert error_type(type("Bad Thing", (Exception,), {})()) == "Bad_Thing"
    assert error_type(type("Ärger", (Exception,), {})()) == "Error"


@pytest.mark.asyncio
async def test_arun_serves_in_an_event_loop_until_cancelled(fake: FakeOpsCore) -> None:
    # Given a worker run by asyncio, with an async handler
    worker = AgentWorker(fake.client(), "agent-1", poll=FAST_POLL)

    @worker.task("web.fetch")
    async def fetch(task: TaskContext) -> dict[str, Any]:
        return {"n": task.input["n"]}

    fake.queue.append(leased(1))
    serving = asyncio.create_task(worker.arun())

    # When its task is done and the program cancels it
    while task_id(1) not in fake.results:
        assert not serving.done(), serving
        await asyncio.sleep(0.01)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving

    # Then it stopped as run() would: the result reported, the agent offline
    assert fake.results[task_id(1)]["output"] == {"n": 1}
    assert worker.stopped
    assert fake.state_names[-1] == "offline"


def test_a_broken_answer_to_a_lease_does_not_stop_the_worker(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given Ops-Core answers one lease with a body that is not a task
    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        return {"ok": True}

    fake.queue += [{"not": "a task"}, leased(2)]

    # When the worker leases
    worker.start()

    # Then it goes on to the next task
    eventually(lambda: task_id(2) in fake.results, "the next task done", lambda: fake.results)
    assert worker.leasing


def test_run_raises_worker_failed_when_the_worker_stops_on_its_own(fake: FakeOpsCore) -> None:
    # Given Ops-Core refuses the agent's key when it leases (revoked after it registered)
    fake.refuses_key = True
    worker = AgentWorker(fake.client(), "agent-1", poll=FAST_POLL)

    # When it runs, Then run() ends with the reason, and the agent's state says it too
    with pytest.raises(WorkerFailed, match="refuses to lease tasks to this agent: 401 unauthorized"):
        worker.run()
    assert fake.state_names == ["idle", "error"]
    assert "401 unauthorized" in fake.states[-1]["error"]["message"]


def test_stop_keeps_to_the_drain_timeout_when_every_slot_is_busy(fake: FakeOpsCore) -> None:
    # Given a worker with one slot, taken by a handler that ignores its lease and runs until released
    worker = AgentWorker(fake.client(), "agent-1", max_concurrency=1, poll=FAST_POLL)
    started, release = threading.Event(), threading.Event()

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        started.set()
        release.wait()
        return {"late": True}

    fake.queue.append(leased(1))
    worker.start()
    # (the handler starts after the leasing thread took the slot; it then waits for a free one)
    eventually(started.is_set, "the handler running")

    # When the worker stops with no time to drain
    stopping = threading.Thread(target=worker.stop, kwargs={"drain_timeout": 0}, daemon=True)
    stopping.start()

    # Then it stops while the handler still runs (the leasing thread waiting for a slot does not hold it up)
    try:
        eventually(lambda: worker.stopped, "the worker stopped", lambda: fake.state_names)
        assert worker.running == 1
        assert fake.state_names[-1] == "offline"
    finally:
        release.set()
    # and the handler's late result is dropped
    eventually(lambda: worker.running == 0, "the handler ended")
    assert "output" not in fake.results.get(task_id(1), {})


def test_a_task_with_a_field_this_sdk_does_not_know_is_still_run(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given a newer Ops-Core whose leased task carries a field this SDK does not know
    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        return {"n": task.input["n"]}

    fake.queue.append({**leased(1), "trace_id": "abc"})

    # When the worker leases it
    worker.start()

    # Then the handler runs and its result is reported
    eventually(lambda: task_id(1) in fake.results, "the result", lambda: fake.results)
    assert fake.results[task_id(1)]["output"] == {"n": 1}


def test_a_handler_ended_by_a_cancel_fails_the_attempt_and_its_heartbeats_stop(
    fake: FakeOpsCore, worker: AgentWorker
) -> None:
    # Given an async handler ended by a cancel escaping it (an inner task's, say)
    @worker.task("web.fetch")
    async def fetch(task: TaskContext) -> None:
        raise asyncio.CancelledError

    fake.queue.append(leased(1, heartbeat_seconds=1))

    # When the worker runs it
    worker.start()

    # Then the attempt fails with the cancel's type, and the slot is free again
    eventually(lambda: task_id(1) in fake.results, "the result", lambda: fake.results)
    assert fake.results[task_id(1)]["status"] == "failed"
    assert fake.results[task_id(1)]["error"]["type"] == "CancelledError"
    eventually(lambda: worker.running == 0, "the slot freed")


def test_heartbeats_are_sent_once_each_whatever_the_clients_retry_policy(fake: FakeOpsCore) -> None:
    # Given a client that retries, and heartbeats that get no answer
    sleeps: list[float] = []
    retrying = RetryPolicy(max_attempts=4, sleep=sleeps.append)
    worker = AgentWorker(fake.client(retrying), "agent-1", poll=FAST_POLL, max_heartbeat_failures=2, drain_timeout=0)

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        task.lease_lost.wait()

    fake.queue.append(leased(1, heartbeat_seconds=1))
    fake.heartbeats_unanswered = True

    # When a task runs until the worker gives up on its heartbeats
    worker.start()
    assert worker.wait(timeout=30), "the worker never gave up"
    worker.stop()

    # Then no heartbeat went through the client's retries: each failed beat was counted at once
    assert sleeps == []
    assert "2 heartbeats in a row" in (worker.failure or "")


def test_a_result_is_reported_without_waiting_for_a_heartbeat_in_flight(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given a heartbeat that hangs
    opened = fake.hold("heartbeat")

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        fake.held["heartbeat"].wait()
        return {"done": True}

    fake.queue.append(leased(1, heartbeat_seconds=1))

    # When the handler finishes while it is in flight
    worker.start()
    try:
        # Then the result is reported all the same
        eventually(lambda: task_id(1) in fake.results, "the result", lambda: fake.results)
    finally:
        opened.set()
    assert fake.results[task_id(1)]["output"] == {"done": True}


def test_the_handler_starts_while_the_busy_report_is_still_on_its_way(fake: FakeOpsCore, worker: AgentWorker) -> None:
    # Given a handler, and state reports that hang once the worker has reported idle
    started = threading.Event()

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        started.set()

    worker.start()
    opened = fake.hold("state")
    fake.queue.append(leased(1))

    # When a task is leased
    # Then its handler runs before the busy report is answered
    try:
        eventually(started.is_set, "the handler started", lambda: fake.state_names)
    finally:
        opened.set()


def test_an_unexpected_exception_starting_a_task_does_not_stop_the_leasing(
    fake: FakeOpsCore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker with one slot whose state reports fail with an exception the client does not expect
    worker = AgentWorker(fake.client(), "agent-1", max_concurrency=1, poll=FAST_POLL, drain_timeout=0)

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        if task.input["n"] == 1:  # (ends once the busy report is on its way, so that it is made, and fails)
            fake.held["state"].wait()
            opened.set()
        return {"n": task.input["n"]}

    worker.start()
    opened = fake.hold("state")
    fake.broken.add("state")
    fake.queue += [leased(1), leased(2)]

    # When it leases two tasks in turn
    # Then both run and are reported, and it still leases
    try:
        eventually(lambda: len(fake.results) == 2, "both results", lambda: (fake.results, caplog.text))
        assert worker.leasing
    finally:
        fake.broken.clear()
        opened.set()
        worker.stop()


def test_an_unexpected_exception_from_a_heartbeat_tells_the_handler_its_lease_is_lost(
    fake: FakeOpsCore, worker: AgentWorker
) -> None:
    # Given heartbeats that fail with an exception the client does not expect
    told: list[str] = []

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        task.lease_lost.wait()
        told.append(task.lost_reason or "")

    fake.broken.add("heartbeat")
    fake.queue.append(leased(1, heartbeat_seconds=1))

    # When a task runs
    worker.start()

    # Then its handler is told the lease is lost, and why
    eventually(lambda: bool(told), "the handler told")
    assert "RuntimeError" in told[0]


def test_a_second_signal_ends_the_drain(fake: FakeOpsCore, caplog: pytest.LogCaptureFixture) -> None:
    # Given a worker running in the main thread with a long drain timeout, and a task that runs until released
    worker = AgentWorker(fake.client(), "agent-1", poll=FAST_POLL, drain_timeout=3600)
    caplog.set_level(logging.INFO, logger="opscore_sdk.worker")
    started, release = threading.Event(), threading.Event()
    problems: list[str] = []

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        started.set()
        release.wait()

    def signal_twice() -> None:
        try:
            eventually(started.is_set, "the task running")
            os.kill(os.getpid(), signal.SIGTERM)
            eventually(lambda: "waiting up to" in caplog.text, "the drain begun", lambda: caplog.text)
            os.kill(os.getpid(), signal.SIGTERM)
            eventually(lambda: worker.stopped, "the worker stopped")
        except AssertionError as failure:
            problems.append(str(failure))
        finally:
            release.set()

    fake.queue.append(leased(1))

    # When SIGTERM arrives, and again during the drain
    signaller = threading.Thread(target=signal_twice)
    signaller.start()
    worker.run()
    signaller.join()

    # Then run returned without waiting for the task, which was given up, and the agent is offline
    assert problems == []
    assert fake.results[task_id(1)]["error"]["type"] == "WorkerStopped"
    assert fake.state_names[-1] == "offline"


def test_a_task_leased_after_the_stop_gave_up_waiting_is_given_back_not_run(fake: FakeOpsCore) -> None:
    # Given a worker whose lease request hangs
    worker = AgentWorker(fake.client(), "agent-1", max_concurrency=1, poll=FAST_POLL, drain_timeout=0)
    ran = threading.Event()

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> None:
        ran.set()

    opened = fake.hold("next")
    worker.start()
    eventually(fake.held["next"].is_set, "a lease request waiting")

    # When the worker stops without waiting for it, and the request then brings a task
    worker.stop()
    fake.queue.append(leased(1))
    opened.set()

    # Then the task is given back at once as WorkerStopped (to be retried), and its handler never runs
    eventually(lambda: task_id(1) in fake.results, "the task given back", lambda: fake.results)
    assert fake.results[task_id(1)]["error"]["type"] == "WorkerStopped"
    assert not ran.is_set()
