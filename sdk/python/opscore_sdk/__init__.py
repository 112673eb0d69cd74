"""Ops-Core's Python SDK: `OpsCore` and `AsyncOpsCore` (typed clients of the REST API), their exceptions and retry
policy, `AgentWorker` (an agent's lease, heartbeat and report loop around its handlers), and `opscore_sdk.webhook` for
agents that take their tasks by webhook."""

__version__ = "0.1.0"

from opscore_sdk.client import AsyncOpsCore, OpsCore
from opscore_sdk.errors import (
    Conflict,
    ConnectionFailed,
    FieldDetail,
    Forbidden,
    NotFound,
    OpsCoreError,
    Quarantined,
    ServerError,
    StaleState,
    Throttled,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
)
from opscore_sdk.retry import NO_RETRIES, RetryPolicy
from opscore_sdk.worker import AgentFault, AgentWorker, Backoff, LeaseLost, NotRetryable, TaskContext, WorkerFailed

__all__ = [
    "NO_RETRIES",
    "AgentFault",
    "AgentWorker",
    "AsyncOpsCore",
    "Backoff",
    "Conflict",
    "ConnectionFailed",
    "FieldDetail",
    "Forbidden",
    "LeaseLost",
    "NotFound",
    "NotRetryable",
    "OpsCore",
    "OpsCoreError",
    "Quarantined",
    "RetryPolicy",
    "ServerError",
    "StaleState",
    "TaskContext",
    "Throttled",
    "Unauthorized",
    "UnexpectedResponse",
    "ValidationFailed",
    "WorkerFailed",
    "__version__",
]
