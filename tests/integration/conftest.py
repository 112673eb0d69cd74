"""Integration tier: the real handlers on moto, with the tables created from template.yaml's own definitions."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pytest_socket import disable_socket, enable_socket

from opscore import wiring
from opscore.core.clock import utc_now
from opscore.core.observability import logger
from opscore.dispatch.health import SweepReport
from opscore_tools.local.emulation import (
    FAKE_AWS_ENVIRONMENT,
    LOCAL_ONLY_ENVIRONMENT,
    create_resources,
    function_environment,
)
from opscore_tools.local.lambdas import LambdaRuntime
from opscore_tools.local.runner import MOTO_CONFIG
from opscore_tools.local.template import Template
from tests.conftest import EventFactory

SETTLE_SECONDS = 30.0


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket()  # moto answers in-process; nothing here may leave the machine
    yield
    enable_socket()  # only for this tier: the end-to-end tier, in the same run, talks HTTP on loopback


@pytest.fixture
def aws(
    template: Template, runtime: LambdaRuntime, api_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    environment = {**FAKE_AWS_ENVIRONMENT, **function_environment(template), **LOCAL_ONLY_ENVIRONMENT}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config=MOTO_CONFIG):
        hook = create_resources(template, runtime.invoke)
        wiring.reset()
        yield boto3.client("dynamodb")
        hook.drain()
        _settle_sessions(runtime, api_event)
        hook.drain()
    wiring.reset()


def _settle_sessions(runtime: LambdaRuntime, api_event: EventFactory) -> None:
    """Cancel what a test left running and wait until its executions end.

    Executions run on moto's threads: one still running when the mock stops would call AWS for real (and meet the
    socket block) in a later test.
    """
    client = boto3.client("stepfunctions")
    machines = [machine["stateMachineArn"] for machine in client.list_state_machines()["stateMachines"]]
    deadline = time.monotonic() + SETTLE_SECONDS
    cancelled: set[str] = set()
    while True:
        with runtime.exclusive():
            running = [
                execution
                for machine in machines
                for execution in client.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]
            ]
        if not running:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"executions still running after the test: {[e['name'] for e in running]}")
        for execution in running:
            if execution["name"] in cancelled:
                continue
            with runtime.exclusive():
                described = client.describe_execution(executionArn=execution["executionArn"])
            agent_id = json.loads(described["input"])["agent_id"]
            event = api_event("session_control/cancel.json", path={"agentId": agent_id, "sessionId": execution["name"]})
            runtime.invoke("SessionControlFunction", event)
            cancelled.add(execution["name"])
        time.sleep(0.05)


@pytest.fixture(scope="session")
def runtime(template: Template) -> LambdaRuntime:
    return LambdaRuntime(template)


Invoke = Callable[[str, dict[str, Any]], tuple[int, Any]]


@pytest.fixture
def call(aws: Any, runtime: LambdaRuntime) -> Invoke:
    """Invoke an API function with an event; returns (status, decoded JSON body or None)."""

    def invoke(function: str, event: dict[str, Any]) -> tuple[int, Any]:
        response = runtime.invoke(function, event)
        body = response.get("body")
        return response["statusCode"], json.loads(body) if body else None

    return invoke


@dataclass
class Clock:
    """Ops-Core's clock in a test: the real time, moved on by `ahead` (deadlines are wall-clock times)."""

    ahead: timedelta = timedelta(0)

    def now(self) -> datetime:
        return utc_now() + self.ahead

    def move_to(self, seconds: float) -> None:
        """Run `seconds` ahead of the real time from now on; never back (Ops-Core's clock only moves forward)."""
        self.ahead = max(self.ahead, timedelta(seconds=seconds))

    def advance(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)


@pytest.fixture
def clock(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock every service built by `wiring` reads, for the rest of the test."""
    moved = Clock()
    monkeypatch.setattr(wiring, "utc_now", moved.now)
    wiring.reset()  # the services are built again, on first use, with this clock
    return moved


@pytest.fixture
def sweep(runtime: LambdaRuntime, clock: Clock) -> Callable[[float], SweepReport]:
    """Move Ops-Core's clock `seconds` ahead of the real time (it stays there), then run the health sweep."""

    def run(seconds: float) -> SweepReport:
        clock.move_to(seconds)
        with runtime.exclusive():  # moto is not thread-safe: hold off the runner's threads meanwhile
            return wiring.agent_health().sweep()

    return run


class Lines(io.TextIOBase):
    """What the functions write, line by line (Powertools' handler writes whole lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.text.append(text)
        return len(text)

    def objects(self) -> list[dict[str, Any]]:
        with self._lock:
            joined = "".join(self.text)
        return [json.loads(line) for line in joined.splitlines() if line.strip()]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """Every line the functions log while the test runs."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    sink = Lines()
    previous = handler.setStream(sink)
    try:
        yield sink
    finally:
        handler.setStream(previous)
