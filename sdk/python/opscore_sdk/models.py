# Generated from docs/openapi.yaml by datamodel-code-generator: do not edit. Regenerate with `make sdk-models`
# (python -m opscore_tools.sdk_models); tests/sdk/test_models_drift.py fails when this file is out of date.

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AnyUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
)
from typing_extensions import TypeAliasType


class AgentError(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    message: Annotated[
        str | None,
        Field(
            max_length=2048, pattern="^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
        ),
    ] = ""
    """
    May keep tab, line feed and carriage return; no other control character.
    """
    type: Annotated[
        str, Field(max_length=128, min_length=1, pattern="^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    ]


class StateSeconds(BaseModel):
    """
    Seconds in each state within the window (every state named; time before the first report counts nowhere).
    """

    busy: Annotated[float, Field(ge=0.0)]
    error: Annotated[float, Field(ge=0.0)]
    idle: Annotated[float, Field(ge=0.0)]
    initializing: Annotated[float, Field(ge=0.0)]
    offline: Annotated[float, Field(ge=0.0)]
    paused: Annotated[float, Field(ge=0.0)]


class CreatedKey(BaseModel):
    agent_id: str | None
    api_key: str
    """
    Shown once; store it now.
    """
    expires_at: AwareDatetime | None
    """
    When the key stops working (UTC).
    """
    key_id: Annotated[str, Field(pattern="^[0-9a-f]{16}$")]
    role: Literal["admin", "agent"]
    rotated_from: Annotated[str | None, Field(pattern="^[0-9a-f]{16}$")]
    """
    The key this one replaces (set by a rotation).
    """


class Detail(BaseModel):
    field: str
    """
    Dotted path of the field; empty for the whole body.
    """
    in_: Annotated[Literal["body", "path", "query", "header"], Field(alias="in")]
    message: str
    type: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class KeyInfo(BaseModel):
    """
    A key as GET /keys lists it; never the key, never its hash. Null where not set.
    """

    agent_id: str | None
    created_at: AwareDatetime | None
    created_by: str | None
    """
    The key id of the admin that created it, or `opscore-cli` / `opscore-local`.
    """
    expires_at: AwareDatetime | None
    key_id: Annotated[str, Field(pattern="^[0-9a-f]{16}$")]
    last_used_on: date | None
    """
    The UTC day the key last authenticated (recorded once a day, so never more precise).
    """
    revoked_at: AwareDatetime | None
    role: Literal["admin", "agent"]
    rotated_from: Annotated[str | None, Field(pattern="^[0-9a-f]{16}$")]


class KeyPage(BaseModel):
    items: list[KeyInfo]
    next_token: Annotated[
        str | None, Field(max_length=1024, pattern="^[A-Za-z0-9_-]+$")
    ] = None
    """
    Present when more keys follow.
    """


class KeyRequest(BaseModel):
    """
    `{"agent_id": ...}` (with `"role": "agent"` or no role) for an agent key, `{"role": "admin"}` (and no `agent_id`) for an admin key; anything else is a 400.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    agent_id: Annotated[
        str | None, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    ] = None
    expires_at: AwareDatetime | None = None
    """
    When the key stops working: RFC 3339 with its offset, after now (else 400 naming `expires_at`). Stored in UTC with microseconds. Absent or null: the key works until it is revoked.
    """
    role: Literal["admin", "agent"] | None = None


class Percentiles(BaseModel):
    count: Annotated[int, Field(ge=0)]
    """
    The attempts measured.
    """
    p50: Annotated[float | None, Field(ge=0.0)]
    """
    Milliseconds (nearest rank over a log-scale histogram, its bucket's geometric midpoint: within 5% of the measured value, 0.5 ms below 1 ms); null when none.
    """
    p95: Annotated[float | None, Field(ge=0.0)]
    """
    Milliseconds
    """


QueuedByPriorityAdditionalProperty = TypeAliasType(
    "QueuedByPriorityAdditionalProperty", Annotated[int, Field(ge=1)]
)


class QueueCounts(BaseModel):
    in_flight: Annotated[int, Field(ge=0)]
    """
    Tasks leased to the agent now.
    """
    queued: Annotated[int, Field(ge=0)]
    """
    Tasks waiting in the agent's queue.
    """
    queued_by_priority: dict[
        Annotated[str, StringConstraints(pattern=r"^[0-9]$")],
        QueuedByPriorityAdditionalProperty,
    ]
    """
    Queued tasks per priority (`"9"` most urgent); priorities with none are left out.
    """


class FieldFrom(RootModel[str]):
    root: Annotated[
        str,
        Field(
            pattern="^(input|tasks\\.[a-z0-9][a-z0-9_-]{0,63}\\.output|failed\\.error)(\\.[A-Za-z0-9_-]+)*$|^failed\\.task$"
        ),
    ]


class FieldFrom1Item(RootModel[str]):
    root: Annotated[
        str,
        Field(
            pattern="^(input|tasks\\.[a-z0-9][a-z0-9_-]{0,63}\\.output|failed\\.error)(\\.[A-Za-z0-9_-]+)*$|^failed\\.task$"
        ),
    ]


class FieldFrom1(RootModel[list[FieldFrom1Item]]):
    root: Annotated[list[FieldFrom1Item], Field(min_length=1)]


class Reference(BaseModel):
    """
    Replaced, when the task is queued, by the value at the first path that has one, else by `default`; with neither, the attempt fails with OpsCore.InputMissing (its retries and fallback apply). Paths: input.KEY... (the session's input), tasks.ID.output.KEY... (a task that runs before this one; a number picks a list's item), failed.error.type, failed.error.message and failed.task (in a fallback: the task it stands in for).
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    field_from: Annotated[FieldFrom | FieldFrom1, Field(alias="$from")]
    default: Any | None = None
    """
    The value when no path has one (any JSON value without a reference, as it is).
    """


class ReferenceOrValue(
    RootModel[
        Union[
            Reference,
            dict[str, Optional["ReferenceOrValue"]],
            list[Optional["ReferenceOrValue"]],
            str | float | bool | None,
        ]
    ]
):
    root: (
        Reference
        | dict[str, ReferenceOrValue | None]
        | list[ReferenceOrValue | None]
        | (str | float | bool | None)
    )
    """
    Any JSON value; an object with the key `$from`, at any depth, is a Reference.
    """


class Capability(RootModel[str]):
    root: Annotated[
        str,
        Field(max_length=64, min_length=1, pattern="^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
    ]


class RegistrationRequest(BaseModel):
    """
    How tasks reach the agent is its `delivery` channel. `poll` (the default): the agent leases its tasks with
    POST /agent/{agentId}/tasks/next. `webhook`: Ops-Core leases each task for the agent and POSTs it to
    `endpoint` as JSON, the body being the LeasedTask (what tasks/next answers), with two headers:
    `X-OpsCore-Timestamp` (Unix seconds when it was signed) and `X-OpsCore-Signature` (`sha256=` and the hex
    HMAC-SHA256, keyed with `webhook_secret`, of `<timestamp>.<body>`: the timestamp, a dot and the body bytes).
    Check the signature and refuse old timestamps. The endpoint's answer decides the attempt: 200 with a
    TaskResult as its body completes it now (synchronously); 202 means the agent works on it and reports the
    result (and heartbeats) through the API later; any other 4xx, and a redirect (never followed), fails the
    attempt (`OpsCore.DeliveryFailed`); 5xx, 408, 429 and network errors are retried 3 times, then fail it.
    Delivery is at least once: deduplicate on `task_id` and `attempt`. A deployed stack POSTs only to endpoints
    that resolve to public addresses (the local runtime also allows loopback).

    """

    model_config = ConfigDict(
        extra="forbid",
    )
    capabilities: Annotated[list[Capability] | None, Field(max_length=64)] = None
    """
    The actions the agent takes. A trigger or ad-hoc task with an action it does not declare (fallbacks included) is refused with a 400 naming the task's `action` (type `capability_undeclared`); an agent that declares none takes any action.
    """
    delivery: Literal["poll", "webhook"] | None = "poll"
    """
    How tasks reach the agent: `poll` (it leases them) or `webhook` (Ops-Core POSTs them to `endpoint`). A channel Ops-Core lacks is 400 (`unknown_channel`).
    """
    endpoint: AnyUrl | None = None
    """
    https URL; plain http only for loopback hosts (local use); no spaces, control characters or credentials. Where webhook delivery POSTs tasks (required with `delivery: webhook`). With `delivery: webhook`, a deployed stack refuses (400, type `private_endpoint`) a host that is a private, loopback, link-local or otherwise non-public address as written (`10.0.0.1`, `[::1]`, `169.254.169.254`, `[fc00::1]`, any notation of them) or the name `localhost` (or `*.localhost`): the rule delivery applies to each address a name resolves to at each attempt. The local runtime allows them, as its delivery does.
    """
    max_concurrency: Annotated[int | None, Field(ge=1, le=1000)] = 1
    """
    Tasks the agent may hold (leased) at once.
    """
    metadata: dict[str, Any] | None = None
    """
    Any JSON object of at most 8192 bytes (compact JSON, UTF-8).
    """
    name: Annotated[
        str, Field(max_length=128, min_length=1, pattern="^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    ]
    offline_after_seconds: Annotated[int | None, Field(ge=10, le=86400)] = 300
    """
    Silence (no state report, pull, heartbeat or result) after which Ops-Core sets the agent `offline` and fails the leases it holds.
    """
    quarantine_after: Annotated[int | None, Field(ge=1, le=100)] = 3
    """
    The agent's own failures (expired leases, failed deliveries, leased attempts that timed out, failed results with `"fault": "agent"`) within `quarantine_window_seconds` that quarantine it (put it in `error`; see the API's description).
    """
    quarantine_cooldown_seconds: Annotated[int | None, Field(ge=1, le=86400)] = 300
    """
    From a quarantine's start until the agent is half-open and may lease one probe task.
    """
    quarantine_window_seconds: Annotated[int | None, Field(ge=10, le=86400)] = 600
    """
    The window over which `quarantine_after` counts the agent's own failures.
    """
    version: Annotated[
        str | None,
        Field(max_length=64, min_length=1, pattern="^[^\\x00-\\x1f\\x7f-\\x9f]*$"),
    ] = None
    """
    The agent's own version.
    """
    webhook_secret: Annotated[str | None, Field(max_length=256, min_length=16)] = None
    """
    Signs webhook deliveries (HMAC-SHA256); required with `delivery: webhook`. Never returned. Leave it out for no secret: `null` is refused (400).
    """


class RetryPolicy(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    backoff_rate: Annotated[
        float | None, Field(ge=1.0, le=10.0, title="Backoff Rate")
    ] = 2.0
    """
    Each later wait is this times longer.
    """
    backoff_seconds: Annotated[
        int | None, Field(ge=0, le=3600, title="Backoff Seconds")
    ] = 1
    """
    Wait before the first retry (Step Functions waits at least 1 s: 0 is 1).
    """
    max_retries: Annotated[int | None, Field(ge=0, le=10, title="Max Retries")] = 0
    """
    Attempts after the first one.
    """


class RotateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    expires_at: AwareDatetime | None = None
    """
    When the new key stops working (RFC 3339 with its offset, after now).
    """
    old_key_expires_at: AwareDatetime | None = None
    """
    When the old key stops working (RFC 3339 with its offset, after now): the end of its grace period. An earlier expiry the old key already has is kept. Absent or null: the old key works until revoked or expired.
    """


class SpanId(RootModel[str]):
    root: Annotated[str, Field(pattern="^[0-9a-f]{16}$")]


class StateReport(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    details: dict[str, Any] | None = None
    """
    Any JSON object of at most 8192 bytes (compact JSON, UTF-8).
    """
    error: AgentError | None = None
    state: Literal["initializing", "idle", "busy", "paused", "error", "offline"]
    timestamp: AwareDatetime
    """
    RFC 3339 with a timezone (`2026-11-24T10:00:00Z`), kept to the microsecond. The window JSON Schema cannot state: not before 1970-01-01T00:00:00Z (its offset applied) and not more than MAX_CLOCK_SKEW_SECONDS (300 unless the stack sets it) ahead of Ops-Core's clock when the report arrives, else 400 naming `timestamp`; and later than the agent's stored timestamp, else 409 `stale_state` (see setState).
    """


class TaskCounts(BaseModel):
    failed: Annotated[int, Field(ge=0)]
    succeeded: Annotated[int, Field(ge=0)]
    success_rate: Annotated[float | None, Field(ge=0.0, le=1.0)]
    """
    succeeded / (succeeded + failed + timed_out); null when none ended.
    """
    timed_out: Annotated[int, Field(ge=0)]
    """
    A lease or the runner's timeout ran out
    """


class TaskError(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    fault: Literal["task", "agent"] | None = "task"
    """
    Whose failure it is. `task` (the default): the work failed (bad input, an upstream error); the task's retries absorb it and the agent's quarantine does not count it. `agent`: the agent itself is unwell (a crashed tool, out of memory); it counts toward the agent's quarantine.
    """
    message: Annotated[
        str | None,
        Field(
            max_length=2048, pattern="^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
        ),
    ] = ""
    """
    May keep tab, line feed and carriage return; no other control character.
    """
    retryable: bool | None = True
    """
    `false`: the failure is not worth retrying (the input is invalid, the target does not exist): the task's remaining retries are skipped, and its fallback runs at once (or, without one, the session ends in `error`). The task's error (and the session's) keeps `retryable: false`. It does not change what the agent's quarantine counts (`fault` says that).
    """
    type: Annotated[
        str,
        Field(max_length=128, min_length=1, pattern="^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
    ]


class TaskId(RootModel[str]):
    root: Annotated[str, Field(pattern="^[0-9a-f]{32}-[0-9]{3}$")]
    """
    The session id, a dash and the task's 3-digit place in the template.
    """


class TaskResult1(BaseModel):
    """
    `succeeded` with an optional `output`, or `failed` with an `error`.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    attempt: Annotated[int | None, Field(ge=1)] = None
    """
    The attempt this result is for (default the current one); guards against a late duplicate.
    """
    error: TaskError | None = None
    output: dict[str, Any] | None = None
    """
    Only with succeeded; at most 65536 bytes (compact JSON, UTF-8), also when a webhook's 200 answer carries it (a larger one fails the delivery).
    """
    status: Literal["succeeded"]


class TaskResult2(BaseModel):
    """
    `succeeded` with an optional `output`, or `failed` with an `error`.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    attempt: Annotated[int | None, Field(ge=1)] = None
    """
    The attempt this result is for (default the current one); guards against a late duplicate.
    """
    error: TaskError
    output: dict[str, Any] | None = None
    """
    Only with succeeded; at most 65536 bytes (compact JSON, UTF-8), also when a webhook's 200 answer carries it (a larger one fails the delivery).
    """
    status: Literal["failed"]


class TaskResult(RootModel[TaskResult1 | TaskResult2]):
    root: TaskResult1 | TaskResult2
    """
    `succeeded` with an optional `output`, or `failed` with an `error`.
    """


class TaskResultAccepted(BaseModel):
    attempt: Annotated[int, Field(ge=1)]
    """
    The attempt the result was taken for.
    """
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    status: Literal["succeeded", "failed"]
    task_id: Annotated[str, Field(pattern="^[0-9a-f]{32}-[0-9]{3}$")]
    """
    The session id, a dash and the task's 3-digit place in the template.
    """


class TaskTemplate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    action: Annotated[
        str,
        Field(
            max_length=128,
            min_length=1,
            pattern="^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
            title="Action",
        ),
    ]
    """
    What the agent does.
    """
    delay_seconds: Annotated[
        int | None, Field(ge=0, le=604800, title="Delay Seconds")
    ] = 0
    """
    Wait before the task is queued (at most 7 days).
    """
    fallback: Annotated[
        str | None, Field(pattern="^[a-z0-9][a-z0-9_-]{0,63}$", title="Fallback")
    ] = None
    """
    Task run instead when this one still fails after its retries. A task runs once on the main line (unless fallback_only) and once for each run of a task naming it as fallback (down fallback chains), each run up to retry.max_retries + 1 attempts; its item keeps a record of each, at most 31 in a session (DynamoDB's 400 KB item limit): a template that could pass that is refused, a 400 of type too_many_attempts naming the fallback that takes a task past it.
    """
    fallback_only: Annotated[bool | None, Field(title="Fallback Only")] = False
    """
    Runs only as some task's fallback.
    """
    heartbeat_seconds: Annotated[
        int | None, Field(ge=1, le=86399, title="Heartbeat Seconds")
    ] = None
    """
    The lease, renewed by each heartbeat; must be less than timeout_seconds (a 400 names it otherwise). Default: timeout_seconds.
    """
    id: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9_-]{0,63}$", title="Id")]
    """
    Unique within the template.
    """
    input: Annotated[
        dict[str, ReferenceOrValue | None] | None, Field(title="Input")
    ] = None
    """
    The task's input. Any value in it may be a reference, {"$from": PATH} (or a list of paths, the first with a value winning) with an optional "default", replaced when the task is queued by the value at PATH: input.KEY... (the session's input), tasks.ID.output.KEY... (the output of a task that runs before this one), failed.error.type|message or failed.task (in a fallback: the task it stands in for).
    """
    priority: Annotated[int | None, Field(ge=0, le=9, title="Priority")] = None
    """
    9 most urgent; default: the trigger's priority, else 5.
    """
    retry: RetryPolicy | None = None
    timeout_seconds: Annotated[
        int | None, Field(ge=1, le=86400, title="Timeout Seconds")
    ] = 300
    """
    Per attempt, from the moment it is queued (queue wait and work).
    """


class Timestamp(RootModel[str]):
    root: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """


class TraceSpan(BaseModel):
    """
    A span as OpenTelemetry shapes one (and as the `event: span` log line carries it). `kind` is Ops-Core's:
    `session` (the root), `attempt`, `wait` (attribute `wait`: `delay` or `backoff`) or `fallback`. Attributes of
    an attempt: `agent_id`, `session_id`, `task_id`, `template_task_id`, `action`, `attempt`, `outcome` (its task
    status), `queued_at`, `leased_at`, `queue_wait_ms`, `run_ms` (once ended), `error.type`, `error.message`,
    `timed_out`, `retry_at`, `fallback_for`, as they apply.

    """

    attributes: dict[str, str | int | bool]
    duration_ms: Annotated[int | None, Field(ge=0)]
    end_time: Timestamp | None
    kind: Literal["session", "attempt", "wait", "fallback"]
    name: str
    parent_span_id: SpanId | None
    span_id: Annotated[str, Field(pattern="^[0-9a-f]{16}$")]
    start_time: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    status: Literal["OK", "ERROR", "UNSET"]
    trace_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    The session id, which is already an OpenTelemetry trace id (32 hex digits).
    """


class TraceTotals(BaseModel):
    attempts: Annotated[int, Field(ge=0)]
    fallbacks: Annotated[int, Field(ge=0)]
    queue_wait_ms: Annotated[int, Field(ge=0)]
    """
    Over every attempt: queued until leased (or until ended, if never leased).
    """
    retries: Annotated[int, Field(ge=0)]
    """
    Attempts that failed and were tried again.
    """
    run_ms: Annotated[int, Field(ge=0)]
    """
    Over every attempt: leased until ended.
    """
    timeouts: Annotated[int, Field(ge=0)]
    wait_ms: Annotated[int, Field(ge=0)]
    """
    Over every wait: delays and retry backoffs.
    """


class WorkflowCreated(BaseModel):
    version: Annotated[int, Field(ge=1)]
    workflow_id: str


class WorkflowSummary(BaseModel):
    description: str | None
    latest_version: Annotated[int, Field(ge=1)]
    updated_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    workflow_id: str


class WorkflowTemplate(BaseModel):
    """
    A workflow template, posted to POST /v1/opscore/workflows as JSON or YAML. Besides this schema: task ids are unique, a fallback names a task of the same template, fallbacks never lead back to their task, at least one task is not fallback_only, and a reference reads only a task that can run before its own.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    description: Annotated[
        str | None,
        Field(
            max_length=1024,
            pattern="^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$",
            title="Description",
        ),
    ] = None
    name: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9-]{0,63}$", title="Name")]
    """
    The workflow_id.
    """
    tasks: Annotated[
        list[TaskTemplate], Field(max_length=100, min_length=1, title="Tasks")
    ]
    """
    Run in this order.
    """


class WorkflowVersion(BaseModel):
    created_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    template: WorkflowTemplate
    version: Annotated[int, Field(ge=1)]
    workflow_id: str


class AdHocTask(BaseModel):
    """
    One task as a workflow template's `tasks` item writes it (see urn:opscore:schema:workflow-template), except that `id` is optional and there is nothing to fall back to: `fallback` absent (or null), `fallback_only` false.
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    action: Annotated[
        str,
        Field(max_length=128, min_length=1, pattern="^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
    ]
    """
    What the agent does.
    """
    delay_seconds: Annotated[int | None, Field(ge=0, le=604800)] = 0
    """
    Wait before it is queued (at most 7 days).
    """
    fallback: Annotated[None, Field(None)] = None
    """
    Must be absent or null.
    """
    fallback_only: Literal[False] = False
    """
    Must be absent or false.
    """
    heartbeat_seconds: Annotated[int | None, Field(ge=1, le=86399)] = None
    """
    The lease's length, renewed by each heartbeat (default `timeout_seconds`); must be less than `timeout_seconds` (a 400 naming `heartbeat_seconds` otherwise), so at most 86399.
    """
    id: Annotated[str | None, Field(pattern="^[a-z0-9][a-z0-9_-]{0,63}$")] = "task"
    """
    Names the task in its session.
    """
    input: dict[str, Any] | None = {}
    """
    The task's input (any JSON object of at most 65536 bytes, compact JSON in UTF-8). An ad-hoc task runs alone, without a session input or tasks before it, so its input holds no references (`{"$from": ...}` anywhere in it is a 400, `nothing_to_reference`).
    """
    priority: Annotated[int | None, Field(ge=0, le=9)] = None
    """
    9 most urgent; default 5.
    """
    retry: RetryPolicy | None = None
    timeout_seconds: Annotated[int | None, Field(ge=1, le=86400)] = 300
    """
    Per attempt, from being queued (the wait in the queue counts).
    """


class AgentStats(BaseModel):
    agent_id: Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    failure_streak: Annotated[int, Field(ge=0)]
    """
    As GET /agent/{agentId} shows it.
    """
    queue: QueueCounts
    queue_wait_ms: Percentiles
    """
    From queued to leased (an attempt never leased is counted, not timed).
    """
    run_time_ms: Percentiles
    """
    From leased to ended.
    """
    sampled: bool
    """
    State history written before cumulative totals were kept was read in part (a bound was reached): state_seconds covers the newest part of the window. False otherwise.
    """
    since: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    state_seconds: StateSeconds
    """
    Seconds in each state within the window (every state named; time before the first report counts nowhere).
    """
    tasks: TaskCounts
    until: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    utilisation: Annotated[float, Field(ge=0.0, le=1.0)]
    """
    The busy share of the window.
    """
    window: str
    """
    The window asked for.
    """
    window_seconds: Annotated[int, Field(ge=300, le=86400)]


class AgentSummary(BaseModel):
    agent_id: Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    failure_streak: Annotated[int, Field(ge=0)]
    """
    As GET /agent/{agentId} shows it.
    """
    in_flight: Annotated[int, Field(ge=0)]
    """
    Tasks leased to the agent now.
    """
    last_seen_at: Timestamp | None
    max_concurrency: Annotated[int, Field(ge=1)]
    name: str
    quarantined: bool
    queued: Annotated[int, Field(ge=0)]
    """
    Tasks waiting in the agent's queue.
    """
    state: Literal["initializing", "idle", "busy", "paused", "error", "offline"] | None
    """
    The current state; null until the agent's first state report.
    """
    state_timestamp: Timestamp | None
    """
    When the current state was reported (or set by Ops-Core).
    """


class CurrentState(BaseModel):
    details: dict[str, Any] | None
    error: AgentError | None
    state: Literal["initializing", "idle", "busy", "paused", "error", "offline"]
    timestamp: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    version: Annotated[int, Field(ge=1)]
    """
    Counts accepted state updates.
    """


class LeasedTask(BaseModel):
    """
    A task handed to its agent under a lease; what tasks/next answers and what a webhook delivers.
    """

    action: str
    attempt: Annotated[int, Field(ge=1)]
    """
    Send it back with the result.
    """
    attempt_deadline: Timestamp | None
    """
    When the attempt's time runs out (`timeout_seconds` after it was queued): no lease, heartbeat or result counts after it, and the runner records a timeout. Null only for a task queued before deadlines were kept.
    """
    heartbeat_seconds: Annotated[int | None, Field(ge=1)]
    """
    The task's `heartbeat_seconds`: each heartbeat renews the lease for this long, so send one well within it (a third of it leaves room for two lost requests). Null: the lease lasts until `attempt_deadline`, and no heartbeat is needed.
    """
    input: dict[str, Any]
    """
    The task's own input from the template, its references (`$from`) replaced by their values.
    """
    lease_expires_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    Heartbeat (or report the result) before then, or the attempt fails (`OpsCore.LeaseExpired`).
    """
    priority: Annotated[int, Field(ge=0, le=9)]
    probe: Literal[True] | None = None
    """
    Present only on a quarantined agent's probe task (leased while half-open): its success lifts the quarantine, its failure starts it again.
    """
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    session_input: dict[str, Any]
    """
    The trigger's input
    """
    task_id: Annotated[str, Field(pattern="^[0-9a-f]{32}-[0-9]{3}$")]
    """
    The session id, a dash and the task's 3-digit place in the template.
    """
    timeout_seconds: Annotated[int, Field(ge=1)]
    """
    The attempt's time, counted from being queued (the wait in the queue and the work).
    """


class Problem(BaseModel):
    message: str
    retryable: Literal[False] | None = None
    """
    Present (false) when the agent's failed result said `"retryable": false`: the task's remaining retries were skipped, so the task failed after this attempt (and, on the session, ended it).
    """
    task_id: TaskId | None
    """
    The task that failed, when a task did.
    """
    type: str
    """
    The error type the agent reported, or Ops-Core's own: `States.Timeout` (no result within
    `timeout_seconds` of being queued; `timed_out`), `OpsCore.LeaseExpired` (no heartbeat or result before
    the lease ran out; `timed_out`), `OpsCore.AgentOffline` (the agent was marked offline holding the lease;
    `timed_out`), `OpsCore.DeliveryFailed` (the webhook could not deliver the task; `failed`),
    `OpsCore.AgentQuarantined` (queued for an agent that was quarantined; `failed`, no retries, straight to
    the fallback; its message says since when and why: "agent X has been quarantined since <timestamp> (3
    failures in 600 s: OpsCore.LeaseExpired)"), `OpsCore.InputMissing` (a reference in the task's input
    found no value when it was queued; `failed`, retried), `OpsCore.InputTooLarge` (the input, its
    references resolved, is over 64 KiB; `failed`, not retried), `runner_not_started` (a session's runner did
    not start).

    """


class Quarantine(BaseModel):
    """
    A quarantined agent's circuit breaker: since when and why it is handed nothing, and when it may lease one probe task (whose success lifts the quarantine, and whose failure starts it again).
    """

    failures: Annotated[int, Field(ge=0)]
    """
    Its own failures within the window when it (re)began.
    """
    half_open: bool
    """
    The cool-down is over: it may lease (or holds) its probe task.
    """
    last_error_type: str
    """
    The error type of the failure that (re)began it.
    """
    probe_after: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    The end of the cool-down; from then on the agent is half-open.
    """
    probe_task_id: TaskId | None
    """
    The probe task it holds now, if any.
    """
    reason: Literal["failures", "probe_failed"]
    """
    `failures`: `quarantine_after` failures of its own within the window; `probe_failed`: its probe task failed.
    """
    since: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    When the quarantine began (or began again, after a failed probe).
    """
    window_seconds: int
    """
    The window those failures were counted over.
    """


class QueuedTask(BaseModel):
    action: str
    attempt: Annotated[int, Field(ge=1)]
    enqueued_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    lease_expires_at: Timestamp | None
    """
    When the lease runs out; null while queued.
    """
    priority: Annotated[int, Field(ge=0, le=9)]
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    status: Literal["queued", "leased"]
    task_id: Annotated[str, Field(pattern="^[0-9a-f]{32}-[0-9]{3}$")]
    """
    The session id, a dash and the task's 3-digit place in the template.
    """


class SessionStarted(BaseModel):
    quarantine: Quarantine | None
    """
    The agent's quarantine when it is quarantined (null otherwise): the session is accepted, but its tasks fail over to their fallbacks (`OpsCore.AgentQuarantined`) until the agent is half-open.
    """
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    status: Literal["waiting", "processing", "completed", "error", "cancelled"]
    """
    `waiting` -> `processing` -> `completed` | `error` | `cancelled`; the last three are final.
    """
    version: Annotated[int, Field(ge=1)]
    workflow_id: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9-]{0,63}$")]


class SessionSummary(BaseModel):
    agent_id: Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    created_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    ended_at: Timestamp | None
    error: Problem | None
    """
    Why the session ended in error.
    """
    priority: int | None
    """
    The trigger's priority; null when it set none.
    """
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    started_at: Timestamp | None
    status: Literal["waiting", "processing", "completed", "error", "cancelled"]
    """
    `waiting` -> `processing` -> `completed` | `error` | `cancelled`; the last three are final.
    """
    version: Annotated[int, Field(ge=0)]
    """
    The workflow version run; 0 for an ad-hoc task's session.
    """
    workflow_id: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9-]{0,63}$")]
    """
    `ad-hoc` for an ad-hoc task's session.
    """


class SessionTrace(BaseModel):
    agent_id: Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    duration_ms: Annotated[int | None, Field(ge=0)]
    """
    Null while the session is open.
    """
    end_time: Timestamp | None
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    spans: list[TraceSpan]
    """
    The session's span first, then every other span by start time.
    """
    start_time: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    status: Literal["waiting", "processing", "completed", "error", "cancelled"]
    """
    `waiting` -> `processing` -> `completed` | `error` | `cancelled`; the last three are final.
    """
    totals: TraceTotals
    trace_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    The session id, which is already an OpenTelemetry trace id (32 hex digits).
    """
    version: Annotated[int, Field(ge=0)]
    workflow_id: str


class StateAccepted(BaseModel):
    agent_id: Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    previous_state: (
        Literal["initializing", "idle", "busy", "paused", "error", "offline"] | None
    )
    """
    The state this update replaced; null for the agent's first report.
    """
    state: Literal["initializing", "idle", "busy", "paused", "error", "offline"]
    timestamp: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    version: Annotated[int, Field(ge=1)]


class StateHistoryEntry(BaseModel):
    details: dict[str, Any] | None
    error: AgentError | None
    previous_state: (
        Literal["initializing", "idle", "busy", "paused", "error", "offline"] | None
    )
    recorded_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    state: Literal["initializing", "idle", "busy", "paused", "error", "offline"]
    timestamp: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    version: Annotated[int, Field(ge=1)]


class TaskHeartbeat(BaseModel):
    attempt: Annotated[int, Field(ge=1)]
    """
    The attempt that goes on.
    """
    lease_expires_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    The renewed lease's end; heartbeat (or report the result) before then.
    """
    task_id: Annotated[str, Field(pattern="^[0-9a-f]{32}-[0-9]{3}$")]
    """
    The session id, a dash and the task's 3-digit place in the template.
    """


class TaskStarted(BaseModel):
    """
    A SessionStarted for the ad-hoc task's own session, with the task's id.
    """

    quarantine: Quarantine | None
    """
    The agent's quarantine when it is quarantined (null otherwise), as SessionStarted has it.
    """
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    status: Literal["waiting", "processing", "completed", "error", "cancelled"]
    """
    `waiting` -> `processing` -> `completed` | `error` | `cancelled`; the last three are final.
    """
    task_id: Annotated[str, Field(pattern="^[0-9a-f]{32}-[0-9]{3}$")]
    """
    The task's id (`<session_id>-000`), for its result, heartbeats and the session view.
    """
    version: Literal[0]
    workflow_id: Literal["ad-hoc"]


class TriggerRequest1(BaseModel):
    """
    Exactly one of `workflow_id` (a stored workflow) and `template` (a template sent inline).
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    input: dict[str, Any] | None = {}
    """
    Passed to every task beside its own input; at most 65536 bytes (compact JSON, UTF-8). With the tasks' inputs it must fit the 245760 bytes of a session runner's input (413 otherwise; the template limits keep a new template within it).
    """
    priority: Annotated[int | None, Field(ge=0, le=9)] = None
    """
    For tasks that set none; default 5.
    """
    template: WorkflowTemplate | None = None
    """
    Stored as its workflow's next version first (or answered by the equal stored version).
    """
    version: Annotated[int | None, Field(ge=1, le=9999999999)] = None
    """
    Default the workflow's latest version.
    """
    workflow_id: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9-]{0,63}$")]


class TriggerRequest2(BaseModel):
    """
    Exactly one of `workflow_id` (a stored workflow) and `template` (a template sent inline).
    """

    model_config = ConfigDict(
        extra="forbid",
    )
    input: dict[str, Any] | None = {}
    """
    Passed to every task beside its own input; at most 65536 bytes (compact JSON, UTF-8). With the tasks' inputs it must fit the 245760 bytes of a session runner's input (413 otherwise; the template limits keep a new template within it).
    """
    priority: Annotated[int | None, Field(ge=0, le=9)] = None
    """
    For tasks that set none; default 5.
    """
    template: WorkflowTemplate
    """
    Stored as its workflow's next version first (or answered by the equal stored version).
    """
    version: Annotated[int | None, Field(ge=1, le=9999999999)] = None
    """
    Default the workflow's latest version.
    """
    workflow_id: Annotated[str | None, Field(pattern="^[a-z0-9][a-z0-9-]{0,63}$")] = (
        None
    )


class TriggerRequest(RootModel[TriggerRequest1 | TriggerRequest2]):
    root: TriggerRequest1 | TriggerRequest2
    """
    Exactly one of `workflow_id` (a stored workflow) and `template` (a template sent inline).
    """


class WorkflowPage(BaseModel):
    items: list[WorkflowSummary]
    next_token: Annotated[
        str | None, Field(max_length=1024, pattern="^[A-Za-z0-9_-]+$")
    ] = None
    """
    Present when more workflows follow. Opaque: send it back as it is; a token the listing did not return is a 400 naming next_token.
    """


class Agent(BaseModel):
    """
    The registration (without `webhook_secret`), the current state and the agent's queue.
    """

    agent_id: Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    capabilities: list[str]
    current_state: CurrentState | None
    """
    null until the agent's first state report.
    """
    delivery: str
    """
    `poll` or `webhook`.
    """
    endpoint: str | None
    failure_streak: Annotated[int, Field(ge=0)]
    """
    The agent's own failures (those that count toward quarantine) within the last `quarantine_window_seconds`, at most `quarantine_after` (only that many are kept); a success does not reset it, a lifted quarantine (by an admin or a good probe) does.
    """
    last_seen_at: Timestamp | None
    max_concurrency: int
    metadata: dict[str, Any]
    name: str
    offline_after_seconds: int
    quarantine: Quarantine | None
    """
    The open (or half-open) circuit breaker; null while it is closed.
    """
    quarantine_after: int
    quarantine_cooldown_seconds: int
    quarantine_window_seconds: int
    quarantined: bool
    """
    Put in `error` by Ops-Core, its circuit breaker open (see `quarantine`).
    """
    queue: QueueCounts
    registered_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    updated_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    version: str | None


class AgentPage(BaseModel):
    items: list[AgentSummary]
    next_token: Annotated[
        str | None, Field(max_length=1024, pattern="^[A-Za-z0-9_-]+$")
    ] = None
    """
    Present when more agents follow. Opaque: send it back as it is; a token the listing did not return is a 400 naming next_token.
    """


class AttemptRecord(BaseModel):
    attempt: Annotated[int, Field(ge=1)]
    delay_seconds: Annotated[int, Field(ge=0)]
    """
    The delay its run waited out before this attempt was queued (0 for a retry, which waits its backoff).
    """
    ended_at: Timestamp | None
    error: Problem | None
    """
    The attempt's error, its type cut to 128 characters and its message to 512 (a cut message ends with "…"), so that every attempt of a task fits on its item; the task's `error` keeps the last one whole.
    """
    leased_at: Timestamp | None
    """
    When its agent leased it; null when it never was (or on records kept before lease times were).
    """
    queued_at: Timestamp | None
    """
    When the attempt was queued (its start); null on records kept before queue times were.
    """
    retry_at: Timestamp | None
    """
    On an attempt that is retried, when the next one is queued (the end of the backoff); else null.
    """
    started_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    status: Literal[
        "pending",
        "scheduled",
        "queued",
        "leased",
        "succeeded",
        "failed",
        "retrying",
        "timed_out",
        "skipped",
    ]
    """
    `pending`: not reached yet; `scheduled`: waiting out its delay; `queued`: waiting in its agent's queue;
    `leased`: handed to the agent under a lease, the runner waits for its result; `succeeded`; `failed`;
    `retrying`: an attempt failed or timed out, the next one waits out its backoff; `timed_out`; `skipped`: the
    session ended without running it.

    """


class Error1(BaseModel):
    code: Literal[
        "validation_error",
        "unauthorized",
        "forbidden",
        "not_found",
        "stale_state",
        "conflict",
        "payload_too_large",
        "unsupported_media_type",
        "throttled",
        "internal_error",
        "bad_request",
        "idempotency_key_reused",
        "request_in_progress",
        "session_ended",
        "result_conflict",
        "task_not_open",
        "attempt_required",
        "runner_limit_reached",
        "agent_quarantined",
        "not_quarantined",
        "key_inactive",
        "key_quota_reached",
    ]
    details: list[Detail] | None = None
    message: str
    quarantine: Quarantine | None = None
    """
    With `agent_quarantined` only.
    """


class Error(BaseModel):
    error: Error1
    request_id: str


class HistoryPage(BaseModel):
    items: list[StateHistoryEntry]
    next_token: Annotated[
        str | None, Field(max_length=1024, pattern="^[A-Za-z0-9_-]+$")
    ] = None
    """
    Present when more entries follow. Opaque: send it back as it is; a token the listing did not return is a 400 naming next_token.
    """


class QueuePage(BaseModel):
    items: list[QueuedTask]
    next_token: Annotated[
        str | None, Field(max_length=1024, pattern="^[A-Za-z0-9_-]+$")
    ] = None
    """
    Present when more tasks follow. Opaque: send it back as it is; a token the listing did not return is a 400 naming next_token.
    """


class SessionPage(BaseModel):
    items: list[SessionSummary]
    next_token: Annotated[
        str | None, Field(max_length=1024, pattern="^[A-Za-z0-9_-]+$")
    ] = None
    """
    Present when more sessions follow. Opaque: send it back as it is; a token the listing did not return is a 400 naming next_token.
    """


class TaskView(BaseModel):
    action: str
    attempts: Annotated[int, Field(ge=0)]
    """
    Attempts queued so far
    """
    duration_ms: Annotated[int | None, Field(ge=0)]
    ended_at: Timestamp | None
    error: Problem | None
    """
    The last attempt's error (null once an attempt succeeded); `retryable: false` when the agent said it was not worth retrying, which is why no retry followed.
    """
    fallback_for: list[str]
    """
    Template ids of the tasks this one ran in place of.
    """
    fallback_only: bool
    history: list[AttemptRecord]
    id: str
    """
    The task's id in the template.
    """
    input: dict[str, Any] | None
    """
    The task's input as its current attempt was queued, its references resolved (as given, references included, when one found no value); null until queued.
    """
    output: dict[str, Any] | None
    priority: int | None
    scheduled_for: Timestamp | None
    """
    When a scheduled or retrying task is queued.
    """
    started_at: Timestamp | None
    status: Literal[
        "pending",
        "scheduled",
        "queued",
        "leased",
        "succeeded",
        "failed",
        "retrying",
        "timed_out",
        "skipped",
    ]
    """
    `pending`: not reached yet; `scheduled`: waiting out its delay; `queued`: waiting in its agent's queue;
    `leased`: handed to the agent under a lease, the runner waits for its result; `succeeded`; `failed`;
    `retrying`: an attempt failed or timed out, the next one waits out its backoff; `timed_out`; `skipped`: the
    session ended without running it.

    """
    task_id: Annotated[str, Field(pattern="^[0-9a-f]{32}-[0-9]{3}$")]
    """
    The session id, a dash and the task's 3-digit place in the template.
    """


class SessionView(BaseModel):
    """
    A SessionSummary with the session's input and its tasks.
    """

    agent_id: Annotated[str, Field(pattern="^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    created_at: Annotated[
        str, Field(pattern="^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}Z$")
    ]
    """
    UTC, microsecond precision, as stored (string order is time order).
    """
    ended_at: Timestamp | None
    error: Problem | None
    """
    Why the session ended in error.
    """
    input: dict[str, Any]
    """
    The trigger's input.
    """
    priority: int | None
    """
    The trigger's priority; null when it set none.
    """
    session_id: Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
    """
    32 hex digits; ids sort by creation time.
    """
    started_at: Timestamp | None
    status: Literal["waiting", "processing", "completed", "error", "cancelled"]
    """
    `waiting` -> `processing` -> `completed` | `error` | `cancelled`; the last three are final.
    """
    tasks: list[TaskView]
    """
    Every task of the template, in template order.
    """
    version: Annotated[int, Field(ge=0)]
    """
    The workflow version run; 0 for an ad-hoc task's session.
    """
    workflow_id: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9-]{0,63}$")]
    """
    `ad-hoc` for an ad-hoc task's session.
    """


ReferenceOrValue.model_rebuild()
