"""The session runner, locally: moto executes the template's state machines, and their Lambda tasks run the real
handlers in this process.

moto calls Lambda through boto3's default session. A `before-call` hook on that session answers every Invoke with
the handler's own return value (or its error, shaped as Lambda reports an unhandled one), so no Docker is needed.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from opscore_tools.local.template import ACCOUNT_ID, REGION, Template, local_state_machine_name

# Makes moto run the ASL (Wait, Choice, Task, Retry, Catch, task tokens) instead of only recording executions.
MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}}

Invoke = Callable[[str, dict[str, Any]], Any]


def issue_a_token_per_attempt() -> None:
    """Make moto give each attempt of a `.waitForTaskToken` state a task token of its own, as Step Functions does.

    moto 5.2.5 makes the token once per state entry: a retry (the state's `Retry`) reuses it, and the token's answer
    from the attempt before (the SendTaskFailure that caused the retry) ends the new attempt at once. Step Functions
    issues a new token for every attempt, and Ops-Core's runners rely on that (a retried task is a new attempt).
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )

    original = StateTaskServiceCallback._eval_execution
    if getattr(original, "issues_a_token_per_attempt", False):
        return

    def eval_execution(self: Any, env: Any) -> None:
        waits_for_token = (
            self._is_integration_pattern()
            and ResourceCondition.WaitForTaskToken in self._supported_integration_patterns
        )
        if waits_for_token and env.states.context_object.context_object_data["State"].get("RetryCount", 0) > 0:
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        original(self, env)

    eval_execution.issues_a_token_per_attempt = True  # type: ignore[attr-defined]
    StateTaskServiceCallback._eval_execution = eval_execution  # type: ignore[method-assign]


def count_state_data_in_utf8() -> None:
    """Make moto measure a state's data as Step Functions does: 256 KiB of UTF-8 (States.DataLimitExceeded past it).

    moto 5.2.5 measures the JSON with every non-ASCII character escaped (`\\ud83d\\ude00` for one emoji, 12 bytes
    for 4), so a session with non-ASCII input Step Functions runs would fail locally.
    """
    import importlib

    from moto.stepfunctions.parser import quotas

    def is_within_size_quota(value: Any) -> bool:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return len(text.encode()) <= quotas.MAX_STATE_SIZE_UTF8_BYTES

    for module in (
        "moto.stepfunctions.parser.asl.component.state.state",
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda",
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
    ):
        importlib.import_module(module).is_within_size_quota = is_within_size_quota  # type: ignore[attr-defined]


def create_state_machines(template: Template) -> None:
    import boto3

    client = boto3.client("stepfunctions", region_name=REGION)
    for machine in template.state_machines:
        client.create_state_machine(
            name=local_state_machine_name(machine.logical_id),
            definition=machine.definition(),
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/opscore-local-runner",
            type="STANDARD",
        )


def function_name(url_path: str) -> str:
    """`/2015-03-31/functions/<name or ARN>/invocations` -> the function's name."""
    name = unquote(url_path.split("/functions/", 1)[1].split("/", 1)[0])
    return name.rsplit(":function:", 1)[-1].split(":", 1)[0]


class LambdaInvokeHook:
    """Answers lambda:Invoke calls made through boto3's default session by invoking the template's handlers.

    A RequestResponse call runs the handler and returns what it returned. An `Event` call (asynchronous) is answered
    202 at once and runs on a thread of its own, as Lambda runs it after answering; `drain` waits for those.
    """

    def __init__(self, template: Template, invoke: Invoke) -> None:
        self._functions = set(template.functions)
        self._invoke = invoke
        self._background: list[threading.Thread] = []
        self._lock = threading.Lock()

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every asynchronous invocation started so far (and those they started) has finished."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                running = [thread for thread in self._background if thread.is_alive()]
                self._background = running
            if not running:
                return
            running[0].join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(running)} asynchronous invocations still running")

    def install(self) -> None:
        import boto3

        # A fresh default session: moto starts a mock by resetting it, so the hook goes on after the mock started.
        boto3.DEFAULT_SESSION = None
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call.lambda.Invoke", self._answer)

    def _answer(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders
        from botocore.response import StreamingBody

        name = function_name(params["url_path"])
        if name not in self._functions:
            raise LookupError(f"the local runtime has no function {name!r}")
        payload = json.loads(params["body"] or b"{}")
        if params.get("headers", {}).get("X-Amz-Invocation-Type") == "Event":
            return self._start_in_background(name, payload, params)
        parsed: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        try:
            result = self._invoke(name, payload)
        except Exception as error:  # Lambda reports any unhandled error this way
            result = {"errorType": type(error).__name__, "errorMessage": str(error)}
            parsed["FunctionError"] = "Unhandled"
        body = json.dumps(result).encode()
        parsed["Payload"] = StreamingBody(io.BytesIO(body), len(body))
        return AWSResponse(params.get("url", "http://lambda.local"), 200, HTTPHeaders(), None), parsed

    def _start_in_background(self, name: str, payload: Any, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders
        from botocore.response import StreamingBody

        def run() -> None:
            try:
                self._invoke(name, payload)
            except Exception:
                logging.getLogger("opscore.local").exception("asynchronous invocation of %s failed", name)

        thread = threading.Thread(target=run, name=f"lambda-event-{name}", daemon=True)
        with self._lock:
            self._background.append(thread)
        thread.start()
        parsed = {"StatusCode": 202, "Payload": StreamingBody(io.BytesIO(b""), 0)}
        return AWSResponse(params.get("url", "http://lambda.local"), 202, HTTPHeaders(), None), parsed
