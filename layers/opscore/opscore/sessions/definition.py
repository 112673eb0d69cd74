"""The session runner of a workflow template, in Amazon States Language: a pure function of the template.

Each task run (see opscore.sessions.plan) is a Task state named after the task, which invokes the dispatch function
with `.waitForTaskToken`: the attempt waits in its agent's queue until the agent's result (or Ops-Core, when it ends
the attempt itself) closes the token. On that state:
- `delay_seconds` is a Wait state before it;
- `timeout_seconds` is its `TimeoutSeconds`, counted from the moment it is queued (queue wait and work);
- the retry policy is its native `Retry` on Ops-Core's retried failure names (RETRIED_ERRORS), with the template's
  backoff; failures it does not list (a quarantined agent, a cancel, a failed result the agent says is not worth
  retrying) are never retried;
- `fallback` is a `Catch` to the fallback's own state; without one, the failure goes to `Record Failure`.
A successful attempt is one state transition. Ops-Core records each attempt's end (and the session's completion)
when it hears of it, so no state is spent on bookkeeping; only a failed session passes `Record Failure`, a Lambda
task that writes its end, and, should that fail, `Record Runner Failure`, a direct DynamoDB update.

The task's static input and priority are not in the definition: they come from the execution's input (`tasks`),
so templates that differ only in those share one machine, and so do ad-hoc tasks of one shape.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NamedTuple

from opscore.core.contracts import canonical_json
from opscore.core.errors import FieldProblem, ValidationFailed
from opscore.sessions.errors import RETRIED_ERRORS, SESSION_CANCELLED_ERROR
from opscore.sessions.plan import MAX_BACKOFF_SECONDS, TaskRun, retry_interval, task_runs
from opscore.workflows.templates import WorkflowTemplate

# Lambda's own transient failures, retried apart from the template's policy (they are not the agent's failures).
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    "Sandbox.Timedout",
    "Throttled",
    "ServiceUnavailable",  # DynamoDB or Step Functions failed for a moment (opscore.aws.failures)
)
LAMBDA_RETRY = {
    "ErrorEquals": list(LAMBDA_TRANSIENT_ERRORS),
    "IntervalSeconds": 1,
    "MaxAttempts": 5,
    "BackoffRate": 2,
}
DYNAMODB_TRANSIENT_ERRORS = (
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.InternalServerErrorException",
)
RECORD_FAILURE = "Record Failure"
RECORD_RUNNER_FAILURE = "Record Runner Failure"
SESSION_FAILED = "Session Failed"
SESSION_CANCELLED = "Session Cancelled"
RUNNER_FAILED = "Runner Failed"
# What a session's error says when even its failure could not be recorded by the dispatch function.
RUNNER_FAILED_PROBLEM = canonical_json(
    {
        "type": "OpsCore.RunnerFailed",
        "message": "the session runner could not record how the session failed",
        "task_id": None,
    }
)
MACHINE_NAME_LIMIT = 80
DEFINITION_LIMIT_BYTES = 1_048_576  # Step Functions' quota on a state machine's definition (not adjustable)
HASH_CHARS = 16


class RunnerTargets(NamedTuple):
    """What a generated definition calls: the dispatch function, and the table for the last-resort record."""

    dispatch_function_arn: str
    table_name: str


def runner_definition(template: WorkflowTemplate, targets: RunnerTargets) -> dict[str, Any]:
    runs = task_runs(template)
    states: dict[str, Any] = {}
    for run in runs:
        states.update(_task_states(run, targets))
    states.update(_ending_states(targets))
    definition = {
        "Comment": f"Ops-Core session runner for workflow {template.name}: one Task state per task run.",
        "StartAt": runs[0].entry,
        "States": states,
    }
    size = len(definition_text(definition).encode())
    if size > DEFINITION_LIMIT_BYTES:
        # Each fallback chain is repeated for every task that can enter it: long chains grow the definition fast.
        raise ValidationFailed(
            "the workflow is too large for one state machine",
            [
                FieldProblem(
                    "tasks",
                    f"its session runner would be {size} bytes with {len(runs)} task runs, over Step Functions' "
                    f"{DEFINITION_LIMIT_BYTES} bytes: shorten its fallback chains, or split the workflow",
                    type="too_large",
                )
            ],
        )
    return definition


def definition_text(definition: dict[str, Any]) -> str:
    """The definition as Step Functions stores it: one spelling per definition, so its hash names it."""
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))


def machine_name(prefix: str, workflow: str, definition: dict[str, Any], role_arn: str = "") -> str:
    """`<prefix>-<workflow>-<hash>`: content-addressed, so one definition has one machine and a name one definition.

    The hash covers the role the machine runs as too: CreateStateMachine answers an existing name with the existing
    machine, whatever role it asked for, so a replaced role gets machines of its own. The workflow's name is cut short
    when the whole would pass Step Functions' 80 characters; the hash is never cut.
    """
    content = definition_text(definition) + (f"\n{role_arn}" if role_arn else "")
    digest = hashlib.sha256(content.encode()).hexdigest()[:HASH_CHARS]
    room = MACHINE_NAME_LIMIT - len(prefix) - len(digest) - 2
    readable = re.sub(r"[^A-Za-z0-9_-]", "-", workflow)[: max(room, 0)].rstrip("-")
    return "-".join(part for part in (prefix, readable, digest) if part)


def _task_states(run: TaskRun, targets: RunnerTargets) -> dict[str, Any]:
    route = run.route
    task: dict[str, Any] = {
        "Type": "Task",
        "Comment": f"{route.action}: task {route.id}"
        + (f", in place of task {route.fallback_for.id}" if route.fallback_for is not None else ""),
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {
            "FunctionName": targets.dispatch_function_arn,
            "Payload": {
                "dispatch": route.model_dump(mode="json"),
                "session_id.$": "$.session_id",
                "agent_id.$": "$.agent_id",
                "session_input.$": "$.input",
                "given.$": f"$.tasks[{route.index}]",
                "run.$": "$$.State.EnteredTime",
                "retry_count.$": "$$.State.RetryCount",
                "token.$": "$$.Task.Token",
            },
        },
        "TimeoutSeconds": route.timeout_seconds,
        "ResultPath": None,
        "Retry": _retriers(run),
        "Catch": [
            {"ErrorEquals": [SESSION_CANCELLED_ERROR], "ResultPath": "$.failure", "Next": SESSION_CANCELLED},
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": run.fallback_state or RECORD_FAILURE},
        ],
    }
    if run.next_state is None:
        task["End"] = True
    else:
        task["Next"] = run.next_state
    states: dict[str, Any] = {}
    if run.wait_state is not None:
        states[run.wait_state] = {"Type": "Wait", "Seconds": run.delay_seconds, "Next": route.state}
    states[route.state] = task
    return states


def _retriers(run: TaskRun) -> list[dict[str, Any]]:
    retry = run.route.retry
    retriers: list[dict[str, Any]] = []
    if retry.max_retries:
        retriers.append(
            {
                "ErrorEquals": list(RETRIED_ERRORS),
                "IntervalSeconds": retry_interval(retry),
                "MaxAttempts": retry.max_retries,
                "BackoffRate": retry.backoff_rate,
                "MaxDelaySeconds": MAX_BACKOFF_SECONDS,
            }
        )
    retriers.append(LAMBDA_RETRY)
    return retriers


def _ending_states(targets: RunnerTargets) -> dict[str, Any]:
    return {
        RECORD_FAILURE: {
            "Type": "Task",
            "Comment": "Writes the session's end: the failed task's error, or the runner's.",
            "Resource": targets.dispatch_function_arn,
            "Parameters": {
                "runner_failed": {
                    "session_id.$": "$.session_id",
                    "agent_id.$": "$.agent_id",
                    "failure.$": "$.failure",
                }
            },
            "ResultPath": None,
            "Retry": [LAMBDA_RETRY],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_failure", "Next": RECORD_RUNNER_FAILURE}],
            "Next": SESSION_FAILED,
        },
        RECORD_RUNNER_FAILURE: {
            "Type": "Task",
            "Comment": "The last resort, without Lambda: the session ends in error, unless it has ended already.",
            "Resource": "arn:aws:states:::dynamodb:updateItem",
            "Parameters": {
                "TableName": targets.table_name,
                "Key": {"PK": {"S.$": "States.Format('SESSION#{}', $.session_id)"}, "SK": {"S": "SESSION"}},
                "UpdateExpression": "SET #status = :error, #error = :problem, ended_at = :now, updated_at = :now",
                "ConditionExpression": "#status IN (:waiting, :processing)",
                "ExpressionAttributeNames": {"#status": "status", "#error": "error"},
                "ExpressionAttributeValues": {
                    ":error": {"S": "error"},
                    ":problem": {"S": RUNNER_FAILED_PROBLEM},
                    ":now": {"S.$": "$$.State.EnteredTime"},
                    ":waiting": {"S": "waiting"},
                    ":processing": {"S": "processing"},
                },
            },
            "ResultPath": None,
            "Retry": [
                {
                    "ErrorEquals": list(DYNAMODB_TRANSIENT_ERRORS),
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 2,
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": RUNNER_FAILED}],
            "Next": RUNNER_FAILED,
        },
        SESSION_FAILED: {
            "Type": "Fail",
            "Error": "OpsCore.SessionFailed",
            "Cause": "A task failed after its retries and had no fallback; the session API shows its error.",
        },
        SESSION_CANCELLED: {"Type": "Succeed", "Comment": "Cancelled through the API, which recorded it."},
        RUNNER_FAILED: {
            "Type": "Fail",
            "Error": "OpsCore.RunnerFailed",
            "Cause": "The session's failure could not be recorded by the dispatch function; see its logs.",
        },
    }
