"""Ops-Core in this process, on moto, with every AWS request metered: the handlers and the session runner as
`opscore local` runs them, driven with the sample events of events/."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from bench.meter import Index, Meter
from opscore_tools.local.emulation import FAKE_AWS_ENVIRONMENT, create_resources, function_environment
from opscore_tools.local.events import with_path_parameters
from opscore_tools.local.lambdas import LambdaRuntime
from opscore_tools.local.runner import MOTO_CONFIG
from opscore_tools.local.template import Template

ADMIN = {"key_id": "0123456789abcdef", "role": "admin", "principalId": "0123456789abcdef"}
DEADLINE_SECONDS = 60.0
# What a block of agent contacts needs left of its minute: its blocks take 2 s at most here.
MINUTE_LEFT_SECONDS = 10.0


def agent_caller(agent_id: str) -> dict[str, str]:
    """What the authorizer hands a function for the agent's own key."""
    return {"key_id": "fedcba9876543210", "role": "agent", "agent_id": agent_id, "principalId": "fedcba9876543210"}


class CountingRuntime(LambdaRuntime):
    def __init__(self, template: Template, counts: Callable[[], bool], stdout: TextIO) -> None:
        super().__init__(template, stdout=stdout)
        self.invocations: Counter[str] = Counter()
        self._counts = counts
        self.last_duration = 0.0
        self._running: list[str] = []  # the functions running now, innermost last (one may invoke another)

    @property
    def running(self) -> str | None:
        return self._running[-1] if self._running else None

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        # Timed once the runtime is held: the runner's functions on other threads queue for it, and their wait is
        # not this handler's latency.
        with self.exclusive():
            self._running.append(logical_id)
            try:
                if self._counts():
                    self.invocations[logical_id] += 1
                started = time.perf_counter()
                try:
                    return super().invoke(logical_id, event)
                finally:
                    self.last_duration = time.perf_counter() - started
            finally:
                self._running.pop()


class Harness:
    def __init__(self, template: Template) -> None:
        import boto3
        from moto import mock_aws

        from opscore import wiring

        self.template = template
        self._events = template.root / "events"
        os.environ.update({**FAKE_AWS_ENVIRONMENT, **function_environment(template)})
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
        # Keys get no API Gateway API key here (moto's API Gateway needs a package the project does not install): the
        # bench meters DynamoDB and Lambda, and the usage plan's calls happen once per key, not per request.
        os.environ["OPSCORE_PER_KEY_LIMITS"] = "gateway"
        os.environ["POWERTOOLS_LOG_LEVEL"] = "CRITICAL"  # the bench's console is for its table
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        self._mock = mock_aws(config=MOTO_CONFIG)
        self._mock.start()
        # What handlers print (EMF metric lines) would drown the bench's own output.
        # Not closed: the runner's threads may still be finishing an invocation when the bench moves on, and the
        # runtime points the process's stdout here while one runs.
        self._quiet = open(os.devnull, "w")  # noqa: SIM115
        self.runtime = CountingRuntime(template, self._counts, self._quiet)
        create_resources(template, self.runtime.invoke)
        # Clients made before the meter is installed are not metered: the bench looks through them.
        self.dynamodb = boto3.client("dynamodb")
        self.sfn = boto3.client("stepfunctions")
        key_names = {
            name: [key["AttributeName"] for key in table.properties["KeySchema"]]
            for table in template.tables
            for name in [template.table_names[table.logical_id]]
        }
        indexes = {
            template.table_names[table.logical_id]: [
                Index.declared(index) for index in table.properties.get("GlobalSecondaryIndexes", [])
            ]
            for table in template.tables
        }
        self.table = template.table_names["OpsCoreTable"]
        self.meter = Meter(self.dynamodb, key_names, indexes)
        assert boto3.DEFAULT_SESSION is not None
        self.meter.install(boto3.DEFAULT_SESSION)
        wiring.reset()

    def stop(self) -> None:
        self._mock.stop()

    def _counts(self) -> bool:
        return self.meter.counts()

    # ------------------------------------------------------------------ calls
    def event(
        self,
        name: str,
        *,
        path: dict[str, str] | None = None,
        body: Any = None,
        caller: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        event: dict[str, Any] = copy.deepcopy(json.loads((self._events / name).read_text()))
        if path is not None:
            with_path_parameters(event, path)
        if body is not None:
            event["body"] = json.dumps(body)
            event["headers"]["Content-Type"] = "application/json"
        event["requestContext"]["authorizer"] = caller or ADMIN
        event["headers"].pop("Idempotency-Key", None)
        event["headers"].update(headers or {})
        return event

    def call(self, function: str, event: dict[str, Any]) -> tuple[int, Any]:
        response = self.runtime.invoke(function, event)
        body = response.get("body")
        return response["statusCode"], json.loads(body) if body else None

    def measured(
        self, action: Callable[[], Any], settle: Callable[[], bool] | None = None, only: str | None = None
    ) -> dict[str, Any]:
        """Meter one operation: its own requests, or with `settle` also those of the work it sets off (the runner's
        Lambda tasks run on other threads) until `settle()` holds. With `only`, just what that function does."""
        self.meter.reset()
        self.meter.thread = None if settle is not None else threading.get_ident()
        self.meter.where = None if only is None else lambda: self.runtime.running == only
        self.runtime.invocations.clear()
        self.meter.enabled = True
        try:
            action()
            if settle is not None:
                self.wait(settle, "the operation's background work")
        finally:
            self.meter.enabled = False
        snapshot = self.meter.snapshot()
        self.meter.thread = self.meter.where = None
        return {**snapshot, "lambda_invocations": dict(sorted(self.runtime.invocations.items()))}

    # ------------------------------------------------------------------ the domain, seen through the table
    def register(self, agent_id: str, **settings: Any) -> None:
        body = {"name": "bench agent", **settings}
        event = self.event("registration/put.json", path={"agentId": agent_id}, body=body)
        status, reply = self.call("RegistrationFunction", event)
        assert status in {200, 201}, reply

    def create_workflow(self, template: dict[str, Any]) -> None:
        status, body = self.call("WorkflowsFunction", self.event("workflows/create.json", body=template))
        assert status in {200, 201}, body

    def trigger(self, agent_id: str, workflow_id: str, key: str | None = None) -> str:
        event = self.event(
            "session_control/trigger.json",
            path={"agentId": agent_id},
            body={"workflow_id": workflow_id},
            headers={"Idempotency-Key": key} if key else None,
        )
        status, body = self.call("SessionControlFunction", event)
        assert status == 202, body
        return str(body["session_id"])

    def lease(self, agent_id: str, task_id: str | None = None) -> dict[str, Any]:
        """POST .../tasks/next as the agent: the task it leases (`task_id`, when given, must be the one)."""
        event = self.event("task_api/next.json", path={"agentId": agent_id}, caller=agent_caller(agent_id))
        status, task = self.call("TaskApiFunction", event)
        assert status == 200, (status, task)
        assert task_id is None or task["task_id"] == task_id, (task["task_id"], task_id)
        return dict(task)

    def nothing_ready(self, agent_id: str) -> None:
        """POST .../tasks/next as the agent, which has nothing to lease: 204."""
        event = self.event("task_api/next.json", path={"agentId": agent_id}, caller=agent_caller(agent_id))
        status, body = self.call("TaskApiFunction", event)
        assert status == 204, (status, body)

    def heartbeat(self, agent_id: str, task_id: str) -> None:
        event = self.event(
            "task_api/heartbeat.json", path={"agentId": agent_id, "taskId": task_id}, caller=agent_caller(agent_id)
        )
        status, reply = self.call("TaskApiFunction", event)
        assert status == 200, reply

    def report(self, agent_id: str, task_id: str, status: str = "succeeded", attempt: int | None = None) -> None:
        """The agent's result for a task it holds the lease of (a queued task's result is refused)."""
        body: dict[str, Any] = {"status": status}
        if status == "failed":
            body["error"] = {"type": "BenchError", "message": "on purpose"}
        if attempt is not None:
            body["attempt"] = attempt
        event = self.event(
            "task_api/result.json",
            path={"agentId": agent_id, "taskId": task_id},
            body=body,
            caller=agent_caller(agent_id),
        )
        answer, reply = self.call("TaskApiFunction", event)
        assert answer == 200, reply

    def work(self, agent_id: str, session_id: str, index: int, attempts: int = 1, **result: Any) -> None:
        """What a polling agent does with one task: wait for it in the queue, lease it, report its result."""
        self.wait(lambda: self.queued(session_id, index, attempts), f"task {index} queued (attempt {attempts})")
        task_id = f"{session_id}-{index:03d}"
        self.lease(agent_id, task_id)
        self.report(agent_id, task_id, **result)

    def item(self, session_id: str, sort_key: str) -> dict[str, Any]:
        key = {"PK": {"S": f"SESSION#{session_id}"}, "SK": {"S": sort_key}}
        with self.runtime.exclusive():
            return dict(self.dynamodb.get_item(TableName=self.table, Key=key).get("Item") or {})

    def status(self, session_id: str) -> str:
        return str(self.item(session_id, "SESSION").get("status", {}).get("S", ""))

    def queued(self, session_id: str, index: int, attempts: int = 1) -> bool:
        """The runner has handed the attempt over: it waits in its agent's queue for a lease."""
        item = self.item(session_id, f"TASK#{index:03d}")
        return bool(item.get("status", {}).get("S") == "queued" and item.get("attempts", {}).get("N") == str(attempts))

    def wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited too long for {what}")
            time.sleep(0.01)

    @contextmanager
    def one_minute(self, seconds: float = MINUTE_LEFT_SECONDS) -> Iterator[None]:
        """Run a block of an agent's contacts within one minute of the clock, as contacts come in steady use.

        An agent's silence deadline (the key of its Deadlines index entry) is rounded up to the minute, so a contact
        in the same minute as the one before it writes the same deadline and costs the index nothing; the first
        contact in a new minute moves it (2 index WRU). Every metered contact should find the deadline where its
        predecessor left it, so this waits for the next minute when fewer than `seconds` are left of this one, and
        fails if the block ran into the next: its rows would then include a moved deadline.
        """
        left = 60 - time.time() % 60
        if left < seconds:
            time.sleep(left + 0.01)
        minute = time.time() // 60
        yield
        if time.time() // 60 != minute:
            raise RuntimeError(f"a block of agent contacts ran past its minute (over {seconds:.0f} s): rerun the bench")

    def transitions(self, session_id: str) -> int:
        """State transitions Step Functions bills for the session's execution: each state entered, and each retry
        of a state (Step Functions bills a retry as a transition)."""
        arn = self.item(session_id, "SESSION")["execution_arn"]["S"]

        def ended() -> bool:
            with self.runtime.exclusive():
                return bool(self.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING")

        self.wait(ended, "the execution's end")
        with self.runtime.exclusive():
            events = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        entered = sum(1 for event in events if event["type"].endswith("StateEntered"))
        task_entries = sum(1 for event in events if event["type"] == "TaskStateEntered")
        scheduled = sum(1 for event in events if event["type"] in {"TaskScheduled", "LambdaFunctionScheduled"})
        return entered + scheduled - task_entries
