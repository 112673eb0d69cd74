"""What a worker's handler sees of its task (TaskContext), and how its return or exception becomes a TaskResult."""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel

from opscore_sdk.models import LeasedTask

# The API's limits on a TaskError (docs/openapi.yaml): a type it would refuse must not lose the attempt's result.
_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_TYPE_MAX = 128
_MESSAGE_MAX = 2048


class NotRetryable(Exception):
    """Raise it (or a subclass) from a handler when trying again cannot help (bad input, a refused request): the
    failed result says `"retryable": false`, and Ops-Core skips the task's remaining retries for its fallback."""


class AgentFault(Exception):
    """Raise it (or a subclass) when the agent itself is unwell (a crashed tool, out of memory) rather than the task:
    the failed result says `"fault": "agent"`, which counts toward the agent's quarantine."""


class LeaseLost(Exception):
    """Raised by `TaskContext.raise_if_lost()`: the task's lease is gone, so nobody will take its result."""


class TaskContext:
    """One leased task as its handler sees it: `input`, `attempt`, ids, and whether its lease still holds.

    A long handler checks `lease_lost` (a threading.Event) or calls `raise_if_lost()` between steps: once the lease
    is lost (the attempt expired or was cancelled, or the worker could not renew it or is shutting down) its result
    is dropped, so finishing the work is wasted.
    """

    def __init__(self, task: LeasedTask) -> None:
        self.task = task
        self.lease_lost = threading.Event()
        self.lost_reason: str | None = None

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def session_id(self) -> str:
        return self.task.session_id

    @property
    def action(self) -> str:
        return self.task.action

    @property
    def attempt(self) -> int:
        return self.task.attempt

    @property
    def input(self) -> dict[str, Any]:
        return self.task.input

    def raise_if_lost(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(self.lost_reason or "the lease is lost")

    def lose(self, reason: str) -> None:
        """Mark the lease lost (the first reason stays)."""
        if not self.lease_lost.is_set():
            self.lost_reason = reason
            self.lease_lost.set()


Output = Mapping[str, Any] | BaseModel | None
Handler = Callable[[TaskContext], Output | Awaitable[Output]]


async def _awaited(pending: Awaitable[Output]) -> Output:
    return await pending


def run_handler(handler: Handler, context: TaskContext) -> dict[str, Any]:
    """Run `handler` (sync, or async in an event loop of its own) and answer the TaskResult to report."""
    try:
        returned = handler(context)
        output = asyncio.run(_awaited(returned)) if inspect.isawaitable(returned) else returned
        return succeeded(context.attempt, output)
    except BaseException as error:
        # On a task's own thread a CancelledError (an inner cancel escaping an async handler), or a SystemExit, ends
        # only the handler: it is the attempt's failure like any exception, so the attempt ends now.
        return failed(context.attempt, error)


def succeeded(attempt: int, output: object) -> dict[str, Any]:
    if isinstance(output, BaseModel):
        output = output.model_dump(mode="json")
    if output is None:
        return {"status": "succeeded", "attempt": attempt}
    if isinstance(output, Mapping):
        return {"status": "succeeded", "attempt": attempt, "output": dict(output)}
    message = f"the handler returned {type(output).__name__}, not a mapping, a pydantic model or None"
    return failed(attempt, TypeError(message))


def failed(attempt: int, error: BaseException) -> dict[str, Any]:
    body: dict[str, Any] = {"type": error_type(error), "message": str(error)[:_MESSAGE_MAX]}
    if isinstance(error, NotRetryable):
        body["retryable"] = False
    if isinstance(error, AgentFault):
        body["fault"] = "agent"
    return {"status": "failed", "attempt": attempt, "error": body}


def error_type(error: BaseException) -> str:
    """The exception's class name, made acceptable as a TaskError `type` if it is not already."""
    name = type(error).__name__
    if _TYPE_PATTERN.match(name) and len(name) <= _TYPE_MAX:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._:-]", "_", name)[:_TYPE_MAX]
    return cleaned if _TYPE_PATTERN.match(cleaned) else "Error"
