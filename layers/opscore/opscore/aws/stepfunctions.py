"""The Step Functions calls Ops-Core makes: create a workflow's runner, start and stop a session's execution, and close
a task's wait.

Every call that answers for a task token says whether the token was still open: a closed token (the attempt timed
out, or the execution stopped) is an answer, not an error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from opscore.core.errors import Conflict, Throttled

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


MAX_CAUSE_CHARS = 32_768
# Step Functions' quota on an execution's input (and on each state's input and output), in UTF-8 bytes.
STATE_DATA_LIMIT_BYTES = 262_144
# What a session runner's input may take of it: a Catch adds the failure (`$.failure`: an error name and a cause of up
# to 2,048 characters of the agent's message, 8 KiB and more in UTF-8) to the state's data, which must fit as well.
EXECUTION_INPUT_LIMIT_BYTES = STATE_DATA_LIMIT_BYTES - 16 * 1024


_CLOSED_TOKEN_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


_THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException"})


def new_client() -> SFNClient:
    import boto3

    return boto3.client("stepfunctions")


class RunnerLimitReached(Conflict):
    """Step Functions' quota of state machines per account and Region is reached: no new runner can be created."""

    code = "runner_limit_reached"


class MachineMissing(Exception):
    """StartExecution named a state machine that does not exist (yet)."""


class RunnerControl:
    def __init__(self, client: Callable[[], SFNClient]) -> None:
        # The client is built on first use: most runner steps never call Step Functions.
        self._client = client

    def create_machine(self, arn: str, name: str, definition: str, role_arn: str, log_group_arn: str | None) -> str:
        """Create the Standard state machine `name` (whose ARN is `arn`) unless it exists; its ARN either way."""
        request: dict[str, Any] = {
            "name": name,
            "definition": definition,
            "roleArn": role_arn,
            "type": "STANDARD",
            "tracingConfiguration": {"enabled": True},
        }
        if log_group_arn:
            request["loggingConfiguration"] = {
                "level": "ERROR",
                "includeExecutionData": False,
                "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": log_group_arn}}],
            }
        try:
            with _throttling():
                return self._client().create_state_machine(**request)["stateMachineArn"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "StateMachineAlreadyExists":
                # The name is the definition's hash: a machine of that name runs this definition, whatever its
                # logging settings (CreateStateMachine calls a repeat with other settings a conflict).
                return arn
            if code == "StateMachineLimitExceeded":
                raise RunnerLimitReached(
                    "the account has as many Step Functions state machines as its quota allows; delete the runners of "
                    "workflows no longer used, or raise the quota, then store this version again"
                ) from error
            raise

    def start(self, machine_arn: str, session_id: str, runner_input: dict[str, Any]) -> None:
        # Named after the session: Step Functions refuses a second execution of one name, so a retried start cannot
        # run a session twice.
        try:
            with _throttling():
                self._client().start_execution(
                    stateMachineArn=machine_arn, name=session_id, input=execution_input(runner_input)
                )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "StateMachineDoesNotExist":
                raise MachineMissing(machine_arn) from error
            raise

    def stop(self, execution_arn: str, cause: str) -> None:
        try:
            with _throttling():
                self._client().stop_execution(executionArn=execution_arn, error="OpsCore.Cancelled", cause=cause)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        return self._answer(lambda: self._client().send_task_success(taskToken=token, output=json.dumps(output)))

    def fail(self, token: str, error: str, cause: str) -> bool:
        return self._answer(
            lambda: self._client().send_task_failure(taskToken=token, error=error, cause=cause[:MAX_CAUSE_CHARS])
        )

    def _answer(self, call: Any) -> bool:
        try:
            with _throttling():
                call()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _CLOSED_TOKEN_CODES:
                return False
            raise
        return True


def execution_arn(machine_arn: str, session_id: str) -> str:
    """The ARN StartExecution gives the session's execution (it is named after the session)."""
    prefix, _, name = machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{name}:{session_id}"


@contextmanager
def _throttling() -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _THROTTLING_CODES:
            raise Throttled("Step Functions is receiving more requests than it can take; retry shortly") from error
        raise


def execution_input(runner_input: dict[str, Any]) -> str:
    """The execution's input as sent: UTF-8 as it is (`ensure_ascii` would spell each non-ASCII character as up to
    12 bytes of escapes, tripling what counts against EXECUTION_INPUT_LIMIT_BYTES)."""
    return json.dumps(runner_input, ensure_ascii=False, separators=(",", ":"))
