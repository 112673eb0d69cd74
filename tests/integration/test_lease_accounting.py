"""An agent's in-flight count is exactly its open leases, after any interleaving of what agents, operators and the
sweep do.

A hypothesis state machine drives one agent per example through the API on moto, with the session runner really
executing: operators start sessions (ad-hoc tasks, with or without a retry, or a two-task workflow) and cancel them;
the agent pulls tasks, answers them (success, failure or heartbeat, also after the lease has ended) and reports its
state; Ops-Core's clock moves on and the health sweep runs, so leases expire and silent agents go offline. After each
step the sessions are let settle (each waits on a queued or leased task, or has ended), then the agent's view must
count as in flight exactly the tasks its leased listing shows, and never more than max_concurrency.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import EventFactory
from tests.integration.conftest import Clock, Invoke
from tests.integration.session_driver import SessionDriver, eventually

MAX_CONCURRENCY = 2
LEASE_SECONDS = 30
TIMING = {"timeout_seconds": 3600, "heartbeat_seconds": LEASE_SECONDS}  # leases expire; the runner's wait never does
PAIR = {
    "name": "pair",
    "tasks": [
        {"id": "first", "action": "web.fetch", "retry": {"max_retries": 1, "backoff_seconds": 0}, **TIMING},
        {"id": "second", "action": "text.summarise", **TIMING},
    ],
}
ENDED = {"completed", "error", "cancelled"}
# An ad-hoc task (a one-task session), one with a retry, or a session of the two-task workflow.
STARTS = st.sampled_from(["task", "task with a retry", "workflow"])


def test_in_flight_always_equals_the_agents_open_leases(
    call: Invoke, api_event: EventFactory, runtime: LambdaRuntime, clock: Clock
) -> None:
    agents = (f"agent-{number}" for number in itertools.count(1))

    class LeaseAccounting(RuleBasedStateMachine):
        leased = Bundle("leased")  # every task the agent was handed; its lease may have ended since

        def __init__(self) -> None:
            super().__init__()
            self.ops = SessionDriver(call, api_event, agent_id=next(agents), now=clock.now)

        @initialize(target=leased, what=STARTS, count=st.integers(1, 2), pulls=st.integers(0, 2))
        def begin(self, what: str, count: int, pulls: int) -> MultipleResults[str]:
            """Every example begins with work for its agent, some of it leased."""
            self.ops.register(max_concurrency=MAX_CONCURRENCY)
            assert self.ops.create_workflow(PAIR)[0] in {200, 201}
            self.start(what, count)
            eventually(self.settled, "the first tasks queued")
            return self.pull(pulls)

        # ------------------------------------------------------------------ operators
        @rule(what=STARTS, count=st.integers(1, 2))
        def start(self, what: str, count: int) -> None:
            for _ in range(count):
                if what == "workflow":
                    status, answer = self.ops.trigger({"workflow_id": "pair"})
                else:
                    retry = {"max_retries": 1 if what == "task with a retry" else 0, "backoff_seconds": 0}
                    body = {"action": "web.fetch", "retry": retry, **TIMING}
                    event = api_event("session_control/run_task.json", agent_id=self.ops.agent_id, body=body)
                    del event["headers"]["Idempotency-Key"]
                    status, answer = call("SessionControlFunction", event)
                assert status == 202, answer

        @rule(pick=st.integers(0, 9))
        def cancel(self, pick: int) -> None:
            """Cancel one of the agent's sessions (one that has ended answers 409)."""
            status, page = self.ops.sessions(limit="100")
            assert status == 200, page
            if page["items"]:
                session_id = page["items"][pick % len(page["items"])]["session_id"]
                status, answer = self.ops.cancel(session_id)
                assert status in {200, 409}, answer

        # ------------------------------------------------------------------ the agent
        # Agents pull and answer more often than operators act or the sweep runs: each of these rules is there twice,
        # so hypothesis draws it twice as often.
        def pull(self, pulls: int) -> MultipleResults[str]:
            handed = []
            for _ in range(pulls):
                status, task = self.ops.next_task()
                assert status in {200, 204}, task
                if status == 200:
                    handed.append(str(task["task_id"]))
            return multiple(*handed)

        @rule(target=leased, pulls=st.integers(1, 3))
        def lease(self, pulls: int) -> MultipleResults[str]:
            return self.pull(pulls)

        @rule(target=leased, pulls=st.integers(1, 3))
        def lease_more(self, pulls: int) -> MultipleResults[str]:
            return self.pull(pulls)

        def respond(self, task_id: str, answer: str) -> None:
            if answer == "heartbeat":
                status, body = self.ops.heartbeat(task_id)
            elif answer == "succeeded":
                status, body = self.ops.report(task_id, {"status": "succeeded", "output": {}})
            else:
                status, body = self.ops.report(task_id, {"status": "failed", "error": {"type": "ToolError"}})
            assert status in {200, 409}, body  # 409: the lease had ended, or another result was reported

        ANSWERS = st.sampled_from(["succeeded", "failed", "heartbeat"])

        @rule(task_id=leased, answer=ANSWERS)
        def answer(self, task_id: str, answer: str) -> None:
            self.respond(task_id, answer)

        @rule(task_id=leased, answer=ANSWERS)
        def answer_again(self, task_id: str, answer: str) -> None:
            self.respond(task_id, answer)

        @rule(state=st.sampled_from(["idle", "busy", "paused"]))
        def report_state(self, state: str) -> None:
            status, answer = self.ops.report_state(state)
            assert status == 200, answer

        # ------------------------------------------------------------------ time and the sweep
        # Nothing due yet; every lease not renewed since runs out; longer than the agent's offline_after_seconds (300
        # by default), so it goes offline if it said nothing meanwhile.
        @rule(seconds=st.sampled_from([10, LEASE_SECONDS + 1, 400]))
        def sweep(self, seconds: int) -> None:
            clock.advance(seconds)
            runtime.invoke("SweepFunction", api_event("sweep/scheduled.json"))

        # ------------------------------------------------------------------ the invariant
        def leases(self) -> list[dict[str, Any]]:
            status, page = self.ops.queue(status="leased", limit="100")
            assert status == 200, page
            return list(page["items"])

        def settled(self) -> bool:
            """Every open session waits on a task in the queue or under a live lease: the runner is between steps."""
            live = {task["task_id"] for task in self.leases()}
            status, page = self.ops.sessions(limit="100")
            assert status == 200, page
            for summary in page["items"]:
                if summary["status"] in ENDED:
                    continue
                status, view = self.ops.session(summary["session_id"])
                assert status == 200, view
                if not any(
                    task["status"] == "queued" or (task["status"] == "leased" and task["task_id"] in live)
                    for task in view["tasks"]
                ):
                    return False
            return True

        @invariant()
        def in_flight_is_the_open_leases(self) -> None:
            eventually(self.settled, f"{self.ops.agent_id}'s sessions to settle")
            with runtime.exclusive():  # both reads see the same moment
                status, agent = self.ops.agent()
                leases = self.leases()
            assert status == 200, agent
            assert agent["queue"]["in_flight"] == len(leases), (agent["queue"], leases)
            assert len(leases) <= MAX_CONCURRENCY

        def teardown(self) -> None:
            # End this example's sessions: later examples' sweeps and runner threads then meet nothing of it.
            status, page = self.ops.sessions(limit="100")
            for summary in page["items"] if status == 200 else []:
                if summary["status"] not in ENDED:
                    self.ops.cancel(summary["session_id"])

    run_state_machine_as_test(
        LeaseAccounting,
        settings=settings(
            max_examples=8,
            stateful_step_count=15,
            # A failure is reported as found: shrinking it step by step on moto would take minutes.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
