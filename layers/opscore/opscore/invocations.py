"""What the dispatch and sweep functions do with an invocation, over the services `opscore.wiring` builds, so their
handlers only pass it on. It sits beside wiring, not in a context: it joins the runner, dispatch and agent health.

The dispatch function is invoked three ways: by a session runner's Task states (`lambda:invoke.waitForTaskToken`)
with the task's route, the session and a task token, to queue a task attempt and serve its agent; by its `Record
Failure` state with `{"runner_failed": ...}`, to end a failed session; and asynchronously with `{"serve": <agent
id>}` when an agent whose channel pushes can take work again. The sweep, on its schedule,
records attempts the runner timed out, expires leases and marks silent agents offline, then serves the agents that
got a slot back.

Both serve within the time their invocation has left, less DELIVERY_RESERVE_SECONDS for the delivery last started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from opscore import wiring
from opscore.aws.failures import transient_as_unavailable
from opscore.core.observability import logger

if TYPE_CHECKING:
    # Imported where used: the sweep needs neither, and the services import them on the first invocation anyway.
    from opscore.sessions.runner import DispatchRequest, RunnerFailure

# Time kept back from the function's timeout: the last delivery started may take this long (3 tries of 5 s).
DELIVERY_RESERVE_SECONDS = 20.0

RemainingMs = Callable[[], int]  # the Lambda context's get_remaining_time_in_millis


def serving_budget(remaining_ms: int) -> float:
    """Seconds a serve may go on starting deliveries: what is left of the invocation, less the reserve."""
    return max(0.0, remaining_ms / 1000 - DELIVERY_RESERVE_SECONDS)


# NamedTuples: defining a frozen dataclass costs about 0.7 ms of a cold start, a NamedTuple about 0.1 ms.
class ServeRequest(NamedTuple):
    agent_id: str


def dispatch_request(event: Mapping[str, Any]) -> ServeRequest | DispatchRequest | RunnerFailure:
    """Which of its jobs a dispatch invocation asks for."""
    if "serve" in event:
        return ServeRequest(str(event["serve"]))
    from opscore.sessions.runner import DispatchRequest, RunnerFailure

    if "runner_failed" in event:
        return RunnerFailure.model_validate(event["runner_failed"])
    return DispatchRequest.model_validate(event)


def handle_dispatch_event(event: Mapping[str, Any], remaining_ms: RemainingMs) -> dict[str, Any]:
    # A DynamoDB or Step Functions 5xx fails the invocation as ServiceUnavailable, which the runner's Task states
    # retry as they retry Lambda's own errors: a transient failure of AWS never fails a task or its session.
    with transient_as_unavailable():
        return _handle_dispatch_event(event, remaining_ms)


def _handle_dispatch_event(event: Mapping[str, Any], remaining_ms: RemainingMs) -> dict[str, Any]:
    request = dispatch_request(event)
    if isinstance(request, ServeRequest):
        logger.append_keys(agent_id=request.agent_id)
        return {"pushed": wiring.dispatcher().serve(request.agent_id, budget_seconds=serving_budget(remaining_ms()))}
    logger.set_correlation_id(request.session_id)
    logger.append_keys(session_id=request.session_id, agent_id=request.agent_id)
    from opscore.sessions.runner import DispatchRequest

    if isinstance(request, DispatchRequest):
        return {"dispatch": queue_and_serve(request, remaining_ms)}
    for agent_id in sorted(wiring.session_runner().runner_failed(request)):
        budget = serving_budget(remaining_ms())
        if budget > 0:
            wiring.dispatcher().serve(agent_id, budget_seconds=budget)
    return {"recorded": "session_failed"}


def queue_and_serve(request: DispatchRequest, remaining_ms: RemainingMs) -> str:
    """Queue the runner's task attempt, then serve its agent; the outcome is what the runner is told."""
    outcome, task = wiring.session_runner().dispatch(request)
    if task is None or outcome in {"session_ended", "input_unresolved"}:
        return outcome
    # A repeated dispatch serves too: the first may have stopped before it could.
    try:
        wiring.dispatcher().enqueued(request.agent_id, task, budget_seconds=serving_budget(remaining_ms()))
    except Exception:
        # Deliberately broad. The attempt is queued and stored by now: whatever serving raises (AWS errors, a
        # throttle, a fault in a delivery channel), failing this invocation would have the runner retry its Task
        # state for an attempt that is in fact waiting in its agent's queue. Logged with its trace instead.
        logger.exception(
            "serving the agent's queue failed; its next wake or pull takes the task", extra={"event": "serve_failed"}
        )
    return outcome


class SweepOutcome(NamedTuple):
    attempts_timed_out: int
    leases_expired: int
    agents_offline: int
    pushed: int

    def as_dict(self) -> dict[str, int]:
        return self._asdict()


def sweep_and_serve(remaining_ms: RemainingMs) -> SweepOutcome:
    """The health sweep, then a serve of each agent it gave a slot back, while the invocation has time for one."""
    report = wiring.agent_health().sweep()
    pushed = 0
    for agent_id in sorted(report.agents_freed):
        budget = serving_budget(remaining_ms())
        if budget == 0:
            break  # the rest is served when those agents next report, or by the next sweep
        pushed += wiring.dispatcher().serve(agent_id, budget_seconds=budget)
    outcome = SweepOutcome(report.attempts_timed_out, report.leases_expired, report.agents_offline, pushed)
    logger.info("sweep done", extra={"event": "sweep_done", **outcome.as_dict()})
    return outcome
